-- Seed corpus for the rewriter fuzz target: one statement text per line.
SELECT * FROM public.users
SELECT u.id FROM "public"."users" u JOIN public.orders o ON o.user_id = u.id
WITH x AS (SELECT * FROM public.users) INSERT INTO public.users (name) SELECT name FROM x ON CONFLICT (id) DO UPDATE SET name = excluded.name RETURNING *
UPDATE public.users SET name = 'a' WHERE id IN (SELECT id FROM public.users)
DELETE FROM public.users WHERE id = 1 RETURNING id
SET search_path TO public, "$user"
SET LOCAL search_path = 'public'
RESET search_path; RESET ALL; DISCARD ALL
SELECT set_config('search_path', 'public', false)
SELECT pg_catalog.set_config('pgshift.version', 'x', true)
COPY public.users TO STDOUT WITH (FORMAT csv)
COPY public.users (id, name) FROM STDIN
TRUNCATE public.users, public.orders RESTART IDENTITY
SELECT pg_get_serial_sequence('public.users', 'id')
ALTER TABLE public.users ADD COLUMN z int
DROP TABLE public.users; CREATE INDEX ON public.users (name)
LOCK TABLE public.users IN SHARE MODE
SELECT 'public.users', $$public.users$$, $tag$ public.users $tag$, E'public\'.users' -- public.users
/* public.users */ SELECT 1; SELECT "public.users" FROM t
SELECT public.users.id FROM public.users
SELECT * FROM public.usersx, xpublic.users
select * from PUBLIC.USERS
SELECT * FROM public . users
SELECT * FROM public.users WHERE name = U&'\0041'

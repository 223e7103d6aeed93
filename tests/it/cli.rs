//! The migration commands through the `pgshift` binary: database URL from
//! the flag, the environment or the config file; exit codes and messages;
//! `plan`, `status --json`, `validate`.

use std::process::Output;

use crate::migrate::Lab;

fn pgshift(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pgshift"));
    command
        .args(args)
        .env_remove("PGSHIFT_DATABASE_URL")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_the_binary() {
    let lab =
        Lab::new("CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x');")
            .await;
    let url = lab.cluster.url("postgres");
    let good = lab.file(
        "01_b.yaml",
        "operations:\n  - add_column: { table: t, up: upper(a), column: { name: b, type: text } }\n",
    );
    let bad = lab.file(
        "02_bad.json",
        r#"{"operations": [{"add_column": {"table": "t"}}, {"nope": {}}]}"#,
    );
    let wrong_table = lab.file(
        "03_wrong.json",
        r#"{"operations": [{"drop_table": {"name": "missing"}}]}"#,
    );
    let (good, bad, wrong_table) = (
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        wrong_table.to_str().unwrap(),
    );

    let out = tokio::task::spawn_blocking({
        let bad = bad.to_string();
        move || pgshift(&["validate", &bad], &[])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("02_bad.json: 2 problem(s)") && msg.contains("/operations/0/add_column"),
        "{msg}"
    );

    let url2 = url.clone();
    let wrong = wrong_table.to_string();
    let out = tokio::task::spawn_blocking(move || {
        pgshift(&["validate", &wrong, "--database-url", &url2], &[])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("table \"missing\" does not exist"),
        "{}",
        text(&out)
    );

    // The URL from the environment.
    let (g, u) = (good.to_string(), url.clone());
    let out = tokio::task::spawn_blocking(move || {
        pgshift(&["plan", &g], &[("PGSHIFT_DATABASE_URL", &u)])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let plan = text(&out);
    for part in [
        "-- start",
        "ADD COLUMN \"_pgshift_new_b\" text",
        "-- backfill public.t",
        "-- complete",
        "-- rollback",
    ] {
        assert!(plan.contains(part), "{part} missing from plan:\n{plan}");
    }

    // The URL from the config file.
    let config = lab.file(
        "pgshift.toml",
        &format!("[migrate]\ndatabase_url = \"{url}\"\n"),
    );
    let config = config.to_str().unwrap().to_string();
    let (g, c) = (good.to_string(), config.clone());
    let out = tokio::task::spawn_blocking(move || pgshift(&["start", &g, "--config", &c], &[]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let c = config.clone();
    let out =
        tokio::task::spawn_blocking(move || pgshift(&["status", "--json", "--config", &c], &[]))
            .await
            .unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(status["active"]["version"], "01_b");
    assert_eq!(status["active"]["phase"], "active");
    assert_eq!(status["active"]["backfill"][0]["rows_done"], 1);
    let u = url.clone();
    let out =
        tokio::task::spawn_blocking(move || pgshift(&["complete", "--database-url", &u], &[]))
            .await
            .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let u = url.clone();
    let out =
        tokio::task::spawn_blocking(move || pgshift(&["rollback", "--database-url", &u], &[]))
            .await
            .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no migration is in progress"),
        "{}",
        text(&out)
    );

    // No database anywhere: a clear error.
    let g = good.to_string();
    let out = tokio::task::spawn_blocking(move || pgshift(&["start", &g], &[]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("pass --database-url, set PGSHIFT_DATABASE_URL"),
        "{}",
        text(&out)
    );
    let b: String = lab
        .admin()
        .await
        .query_one("SELECT b FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(b, "X");
}

/// `pgshift lint` on a plain SQL migration (as Flyway writes one) and a
/// migration file; `start` refuses a file lint finds errors in, and
/// `--allow-unsafe` starts it anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_flags_unsafe_ddl_and_start_refuses_it_without_allow_unsafe() {
    let lab =
        Lab::new("CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x');")
            .await;
    let url = lab.cluster.url("postgres");
    let flyway = lab.file(
        "V3__index.sql",
        "-- add an index\nCREATE TABLE notes (id int);\nCREATE INDEX ON notes (id);\n\nCREATE INDEX t_a ON t (a);\nALTER TABLE t ADD COLUMN at timestamp;\n",
    );
    let unsafe_file = lab.file(
        "02_index.json",
        r#"{"operations": [{"sql": {"up": "CREATE INDEX t_a ON t (a)", "down": "DROP INDEX CONCURRENTLY IF EXISTS t_a"}}]}"#,
    );
    let (flyway, unsafe_file) = (
        flyway.to_str().unwrap().to_string(),
        unsafe_file.to_str().unwrap().to_string(),
    );

    let out = tokio::task::spawn_blocking({
        let files = [flyway.clone(), unsafe_file.clone()];
        move || pgshift(&["lint", &files[0], &files[1]], &[])
    })
    .await
    .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains(&format!(
            "{flyway}:5: error [require-concurrent-index-creation]"
        )) && msg.contains(&format!("{flyway}:6: warning [prefer-timestamptz]"))
            && msg.contains("instead: pgroll's create_index")
            && msg.contains(&format!("{unsafe_file}: lint: 1 error(s), 0 warning(s)"))
            && !msg.contains(":3: error"),
        "{msg}"
    );

    let out = tokio::task::spawn_blocking({
        let (file, url) = (unsafe_file.clone(), url.clone());
        move || pgshift(&["start", &file, "--database-url", &url], &[])
    })
    .await
    .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("lint found 1 error(s); nothing was started")
            && msg.contains("--allow-unsafe"),
        "{msg}"
    );
    let direct = crate::harness::connect(&url).await;
    let recorded: i64 = direct
        .query_one("SELECT count(*) FROM pgshift.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0, "a refused start records nothing");

    let out = tokio::task::spawn_blocking({
        let (file, url) = (unsafe_file.clone(), url.clone());
        move || {
            pgshift(
                &["start", &file, "--allow-unsafe", "--database-url", &url],
                &[],
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let indexed: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 't_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexed, 1);
}

/// `pgshift latest schema|migration|url`, as pgroll's `latest`: nothing
/// before a migration (exit 1, saying so), then the active migration's
/// version; the URL connects straight to Postgres on that version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_prints_the_latest_version_its_schema_and_a_url_for_it() {
    let lab = Lab::new("CREATE TABLE t (id int PRIMARY KEY, a text);").await;
    let url = lab.cluster.url("postgres");
    let latest = |what: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || pgshift(&["latest", what, "--database-url", &url], &[]))
    };
    let out = latest("schema").await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no migration has run on schema \"public\""),
        "{}",
        text(&out)
    );

    let file = lab.file(
        "01_b.json",
        r#"{"operations": [{"add_column": {"table": "t", "up": "upper(a)", "column": {"name": "b", "type": "text"}}}]}"#,
    );
    lab.start(&file).await;
    let line =
        |out: std::process::Output| String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(line(latest("schema").await.unwrap()), "public_01_b");
    assert_eq!(line(latest("migration").await.unwrap()), "01_b");
    let versioned = line(latest("url").await.unwrap());
    let client = crate::harness::connect(&versioned).await;
    let row = client
        .query_one(
            "SELECT current_setting('pgshift.version'), current_schemas(false)::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "01_b");
    assert_eq!(row.get::<_, String>(1), "{public_01_b,public}");
    let columns = crate::harness::columns(&client, "t").await;
    assert_eq!(columns, vec!["id", "a", "b"]);
}

/// pgroll's history commands with the binary's name changed: `baseline`
/// adopts an existing schema (its DDL in a file, recorded as completed
/// without running); `migrate` leaves the last file active and
/// `--complete` finishes it; `pull` writes the history a directory lacks,
/// and the pulled files replay the same schema on an empty database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_migrate_and_pull_as_pgroll_scripts_run_them() {
    let lab = Lab::new(
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text NOT NULL UNIQUE);
         INSERT INTO accounts (email) VALUES ('a@x'), ('b@x');",
    )
    .await;
    let url = lab.cluster.url("postgres");
    let run = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend(["--database-url", &url]);
            pgshift(&args, &[])
        })
    };
    let dir = lab.dir.path().join("migrations");
    let d = dir.display().to_string();
    let out = run(vec![
        "baseline".into(),
        "00_initial".into(),
        d.clone(),
        "--yes".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let baseline = std::fs::read_to_string(dir.join("00_initial.yaml")).unwrap();
    assert!(
        baseline.contains("CREATE TABLE public.accounts"),
        "{baseline}"
    );
    // Nothing ran: the rows are there, and the version is the baseline's.
    let out = run(vec!["latest".into(), "migration".into()])
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "00_initial");

    std::fs::write(
        dir.join("01_name.yaml"),
        "operations:\n  - add_column: {table: accounts, column: {name: name, type: text}, up: \"split_part(email, '@', 1)\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("02_email.yaml"),
        "operations:\n  - alter_column: {table: accounts, column: email, type: varchar(320)}\n",
    )
    .unwrap();
    let out = run(vec!["migrate".into(), d.clone(), "--expect-one".into()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("2 migration(s)") && text(&out).contains("01_name, 02_email"),
        "{}",
        text(&out)
    );
    let out = run(vec!["migrate".into(), d.clone()]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("01_name: completed"), "{}", text(&out));
    assert!(
        text(&out).contains("02_email: started and left active"),
        "{}",
        text(&out)
    );
    let out = run(vec![
        "migrate".into(),
        d.clone(),
        "--complete".into(),
        "--expect-one".into(),
    ])
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("02_email: completed"), "{}", text(&out));
    let admin = lab.admin().await;
    let names = crate::harness::texts(&admin, "SELECT name FROM accounts ORDER BY id").await;
    assert_eq!(names, ["a", "b"]);

    // pull writes what a fresh checkout lacks, as it was started.
    let pulled = lab.dir.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    std::fs::copy(dir.join("01_name.yaml"), pulled.join("01_name.yaml")).unwrap();
    let p = pulled.display().to_string();
    let out = run(vec!["pull".into(), p.clone()]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("wrote 2 file(s)"), "{}", text(&out));
    let email = std::fs::read_to_string(pulled.join("02_email.yaml")).unwrap();
    assert!(email.contains("varchar(320)"), "{email}");
    // The pulled history builds the same table on an empty database.
    admin.batch_execute("CREATE DATABASE replay").await.unwrap();
    let replay_url = lab.cluster.url("replay");
    let out = tokio::task::spawn_blocking(move || {
        pgshift(
            &["migrate", &p, "--complete", "--database-url", &replay_url],
            &[],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let replay = crate::harness::connect(&lab.cluster.url("replay")).await;
    let columns = "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'public.accounts'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";
    let replayed = crate::harness::texts(&replay, columns).await;
    assert_eq!(
        replayed,
        ["id integer", "name text", "email character varying(320)"]
    );
    assert_eq!(replayed, crate::harness::texts(&admin, columns).await);
}

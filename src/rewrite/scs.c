/*
 * pgshift's one line of C: libpg_query's scanner reads the setting
 * standard_conforming_strings from a thread-local global (its copy of the
 * GUC, src/postgres/src_backend_parser_scan.c), which its parser sets from
 * the parser options but its token scanner never does. The rewriter sets it
 * here, on the scanning thread, before it scans a session's statement, so
 * that tokens are found as that session's server would find them.
 */
#include <stdbool.h>

extern __thread bool standard_conforming_strings;

void pgshift_set_standard_conforming_strings(bool on)
{
    standard_conforming_strings = on;
}

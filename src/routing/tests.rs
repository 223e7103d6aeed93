use std::collections::BTreeMap;

use super::*;
use crate::state::Phase;

fn parsed(raw: &[u8]) -> StartupMessage {
    StartupMessage::parse(raw).expect("a well-formed StartupMessage")
}

fn route_(raw: &[u8], versions: &Versions) -> Result<Route, RoutingError> {
    route(&parsed(raw), versions, &[], None)
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn during_migration() -> Versions {
    Versions {
        schema: "public".into(),
        current: "01_a".into(),
        current_schema: None,
        pins: BTreeMap::new(),
        migration: Some(LiveMigration {
            phase: Phase::Active,
            old: "01_a".into(),
            old_schema: "public_01_a".into(),
            new: "02 b".into(),
            new_schema: "public_02 b".into(),
            old_views: BTreeMap::new(),
            new_views: BTreeMap::new(),
        }),
    }
}

/// What Postgres will apply from `packet`: the session's version and its
/// search_path.
fn applied(packet: &[u8]) -> (Option<String>, Option<String>) {
    let message = parsed(packet);
    (
        message.setting("pgshift.version"),
        message.setting("search_path"),
    )
}

/// The parameters of `packet`, as text.
fn params_of(packet: &[u8]) -> Vec<(String, String)> {
    parsed(packet)
        .params
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
        .collect()
}

#[test]
fn without_a_version_schema_only_the_version_is_set() {
    let versions = Versions {
        schema: "public".into(),
        pins: BTreeMap::new(),
        current: "01_a".into(),
        current_schema: None,
        migration: None,
    };
    for params in [
        vec![("user", "u")],
        vec![("user", "u"), ("options", "-c pgshift.version=01_a")],
    ] {
        let route = route_(&startup(&params), &versions).unwrap();
        assert_eq!(
            (route.version.as_str(), route.version_schema, route.view),
            ("01_a", None, None)
        );
        assert_eq!(
            params_of(&route.startup),
            [("user", "u"), ("pgshift.version", "01_a")].map(|(k, v)| (k.into(), v.into()))
        );
    }
    let err = route_(
        &startup(&[("user", "u"), ("pgshift.version", "00_gone")]),
        &versions,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema version \"00_gone\" does not exist; the versions that exist now are: 01_a"
    );
}

#[test]
fn after_complete_the_current_version_stands_on_its_kept_schema() {
    let views = BTreeMap::from([(
        "orders".to_string(),
        (
            "orders".to_string(),
            vec![("id".to_string(), "id".to_string())],
        ),
    )]);
    let versions = Versions {
        schema: "public".into(),
        pins: BTreeMap::new(),
        current: "02 b".into(),
        current_schema: Some(crate::state::versions::VersionSchema {
            name: "public_02 b".into(),
            views,
        }),
        migration: None,
    };
    let route = route_(&startup(&[("user", "u")]), &versions).unwrap();
    assert_eq!(route.version_schema.as_deref(), Some("public_02 b"));
    assert_eq!(
        applied(&route.startup),
        (
            Some("02 b".into()),
            Some("\"public_02 b\", \"$user\", \"public\"".into())
        )
    );
    let view = route
        .view
        .expect("the kept schema's views are rewritten against");
    assert_eq!(view.views["orders"], "orders");
    assert!(
        view.migrating.is_empty(),
        "no table is migrating: DDL passes"
    );
}

#[test]
fn the_default_route_during_a_migration_is_the_old_version() {
    let route = route_(
        &startup(&[("user", "u"), ("database", "d")]),
        &during_migration(),
    )
    .unwrap();
    assert_eq!(route.version, "01_a");
    assert_eq!(
        params_of(&route.startup),
        [
            ("user", "u"),
            ("database", "d"),
            ("pgshift.version", "01_a"),
            ("search_path", "\"public_01_a\", \"$user\", \"public\"")
        ]
        .map(|(k, v)| (k.into(), v.into())),
        "other parameters are kept in order; pgshift's come last"
    );
}

#[test]
fn a_requested_version_keeps_the_clients_options_and_search_path() {
    let raw = startup(&[
        ("user", "u"),
        (
            "options",
            "-c statement_timeout=5s -c pgshift.version=02\\ b --search_path=app,public",
        ),
    ]);
    let routed = route_(&raw, &during_migration()).unwrap();
    assert_eq!(routed.version, "02 b");
    assert_eq!(
        params_of(&routed.startup),
        [
            ("user", "u"),
            ("options", "-c statement_timeout=5s"),
            ("pgshift.version", "02 b"),
            ("search_path", "\"public_02 b\", app,public")
        ]
        .map(|(k, v)| (k.into(), v.into())),
    );
    // The startup parameter form works too, and does not reach Postgres.
    let raw = startup(&[("user", "u"), ("pgshift.version", "02 b")]);
    let packet = route_(&raw, &during_migration()).unwrap().startup;
    assert_eq!(
        applied(&packet).0.as_deref(),
        Some("02 b"),
        "{:?}",
        params_of(&packet)
    );
    assert_eq!(
        params_of(&packet)
            .iter()
            .filter(|(k, _)| k == "pgshift.version")
            .count(),
        1
    );
}

/// The packets that used to put a session on another search_path or
/// version than the one reported: each is read as Postgres reads it, and
/// what Postgres applies is the version reported and its version schema
/// first.
#[test]
fn startup_packets_are_read_as_postgres_reads_them() {
    let ours = "\"public_01_a\"";
    // (extra parameters, the version Postgres gets, its search_path); no
    // version: refused.
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, String);
    let cases: Vec<Case> = vec![
        // pgjdbc currentSchema, Npgsql SearchPath: a search_path parameter,
        // which Postgres applies after options.
        (
            vec![("search_path", "public")],
            "01_a",
            format!("{ours}, public"),
        ),
        // options given twice: only the last counts.
        (
            vec![
                ("options", "-c pgshift.version=02\\ b"),
                ("options", "-c search_path=app"),
            ],
            "01_a",
            format!("{ours}, app"),
        ),
        // pgshift.version given twice: the last wins.
        (
            vec![("pgshift.version", "01_a"), ("pgshift.version", "02 b")],
            "02 b",
            "\"public_02 b\", \"$user\", \"public\"".into(),
        ),
        // GUC names are case-insensitive.
        (
            vec![("PGSHIFT.VERSION", "02 b"), ("Search_Path", "x")],
            "02 b",
            "\"public_02 b\", x".into(),
        ),
        // A vertical tab splits options as a space does.
        (
            vec![(
                "options",
                "-c search_path=public\x0b-c\x0bpgshift.version=bogus",
            )],
            "",
            String::new(),
        ),
        // A parameter overrides options; grouped and attached switches.
        (
            vec![
                ("options", "-cpgshift.version=02\\ b --search-path=q"),
                ("pgshift.version", "01_a"),
            ],
            "01_a",
            format!("{ours}, q"),
        ),
    ];
    for (params, version, path) in cases {
        let mut all = vec![("user", "u")];
        all.extend(params.iter().copied());
        let routed = route_(&startup(&all), &during_migration());
        if version.is_empty() {
            let err = routed.expect_err("a version that does not exist");
            assert!(
                matches!(&err, RoutingError::UnknownVersion { requested, .. } if requested == "bogus"),
                "{params:?}: {err}"
            );
            continue;
        }
        let routed = routed.unwrap_or_else(|e| panic!("{params:?}: {e}"));
        assert_eq!(routed.version, version, "{params:?}");
        assert_eq!(
            applied(&routed.startup),
            (Some(version.to_string()), Some(path)),
            "{params:?} became {:?}",
            params_of(&routed.startup)
        );
    }
}

#[test]
fn unknown_versions_list_what_exists() {
    let raw = startup(&[("user", "u"), ("options", "-c pgshift.version=03_c")]);
    let err = route_(&raw, &during_migration()).unwrap_err();
    assert_eq!(
        err,
        RoutingError::UnknownVersion {
            requested: "03_c".into(),
            existing: vec!["01_a".into(), "02 b".into()]
        }
    );
}

#[test]
fn routes_follow_their_pins_and_stale_pins_are_refused() {
    let rules = vec![
        RouteRule {
            name: "green".into(),
            application_name: Some("shop-green".into()),
            ..Default::default()
        },
        RouteRule {
            name: "blue".into(),
            application_name: None,
            user: Some("shop".into()),
            ..Default::default()
        },
    ];
    let mut versions = during_migration();
    versions.pins.insert("green".into(), "02 b".into());
    let green = startup(&[("user", "shop"), ("application_name", "shop-green")]);
    assert_eq!(
        route(&parsed(&green), &versions, &rules, None)
            .unwrap()
            .version,
        "02 b"
    );
    // blue has no pin: the default route.
    let blue = startup(&[("user", "shop"), ("application_name", "shop-blue")]);
    assert_eq!(
        route(&parsed(&blue), &versions, &rules, None)
            .unwrap()
            .version,
        "01_a"
    );
    // An explicit request wins over the route.
    let asks = startup(&[
        ("user", "shop"),
        ("application_name", "shop-green"),
        ("pgshift.version", "01_a"),
    ]);
    assert_eq!(
        route(&parsed(&asks), &versions, &rules, None)
            .unwrap()
            .version,
        "01_a"
    );
    // A rule on the listener port.
    let by_port = vec![RouteRule {
        name: "green".into(),
        port: Some(6433),
        ..Default::default()
    }];
    let plain = startup(&[("user", "shop")]);
    assert_eq!(
        route(&parsed(&plain), &versions, &by_port, Some(6433))
            .unwrap()
            .version,
        "02 b"
    );
    assert_eq!(
        route(&parsed(&plain), &versions, &by_port, Some(6432))
            .unwrap()
            .version,
        "01_a"
    );
    versions.pins.insert("blue".into(), "00_gone".into());
    let err = route(&parsed(&blue), &versions, &rules, None).unwrap_err();
    assert!(
        matches!(err, RoutingError::StalePin { ref route, .. } if route == "blue"),
        "{err}"
    );
}

fn in_phase(phase: Phase) -> Versions {
    let mut versions = during_migration();
    versions.migration.as_mut().unwrap().phase = phase;
    versions
}

#[test]
fn while_starting_only_the_old_version_is_live_and_stands_on_its_views() {
    let versions = in_phase(Phase::Starting);
    let route = route_(&startup(&[("user", "u")]), &versions).unwrap();
    assert_eq!(
        (route.version.as_str(), route.version_schema.as_deref()),
        ("01_a", Some("public_01_a"))
    );
    assert_eq!(
        applied(&route.startup).1.as_deref(),
        Some("\"public_01_a\", \"$user\", \"public\"")
    );
    let err = route_(
        &startup(&[("user", "u"), ("pgshift.version", "02 b")]),
        &versions,
    )
    .unwrap_err();
    assert_eq!(
        err,
        RoutingError::UnknownVersion {
            requested: "02 b".into(),
            existing: vec!["01_a".into()]
        }
    );
    assert_eq!(in_phase(Phase::RollingBack).live(), versions.live());
}

#[test]
fn while_completing_new_sessions_get_the_new_version() {
    let versions = in_phase(Phase::Completing);
    let route = route_(&startup(&[("user", "u")]), &versions).unwrap();
    assert_eq!(route.version, "02 b");
    assert_eq!(placement(&versions, "01_a"), (None, None));
    let (schema, view) = placement(&versions, "02 b");
    assert_eq!(schema.as_deref(), Some("public_02 b"));
    assert_eq!(view.unwrap().version_schema, "public_02 b");
    assert!(
        route_(
            &startup(&[("user", "u"), ("pgshift.version", "01_a")]),
            &versions
        )
        .is_err()
    );
}

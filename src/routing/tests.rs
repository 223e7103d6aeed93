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

fn options_of(packet: &[u8]) -> Vec<String> {
    split_options(&parsed(packet).get("options").unwrap())
}

#[test]
fn without_a_migration_the_packet_is_untouched() {
    let versions = Versions {
        schema: "public".into(),
        pins: BTreeMap::new(),
        current: "01_a".into(),
        migration: None,
    };
    for params in [
        vec![("user", "u")],
        vec![("user", "u"), ("options", "-c pgshift.version=01_a")],
    ] {
        let route = route_(&startup(&params), &versions).unwrap();
        assert_eq!(
            route,
            Route {
                version: "01_a".into(),
                route: None,
                version_schema: None,
                startup: None,
                view: None,
            }
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
fn the_default_route_during_a_migration_is_the_old_version() {
    let route = route_(
        &startup(&[("user", "u"), ("database", "d")]),
        &during_migration(),
    )
    .unwrap();
    assert_eq!(route.version, "01_a");
    let packet = route.startup.unwrap();
    assert_eq!(
        options_of(&packet),
        [
            "-c",
            "pgshift.version=01_a",
            "-c",
            "search_path=\"public_01_a\", \"$user\", \"public\""
        ]
    );
    let params = parsed(&packet).params;
    assert_eq!(
        params[0],
        (b"user".to_vec(), b"u".to_vec()),
        "other parameters are kept in order"
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
        options_of(&routed.startup.unwrap()),
        [
            "-c",
            "statement_timeout=5s",
            "-c",
            "pgshift.version=02 b",
            "-c",
            "search_path=\"public_02 b\", app,public"
        ]
    );
    // The startup parameter form works too, and does not reach Postgres.
    let raw = startup(&[("user", "u"), ("pgshift.version", "02 b")]);
    let packet = route_(&raw, &during_migration()).unwrap().startup.unwrap();
    assert!(
        !parsed(&packet)
            .params
            .iter()
            .any(|(k, _)| k == b"pgshift.version")
    );
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
    assert!(
        options_of(route.startup.as_ref().unwrap())
            .contains(&"search_path=\"public_01_a\", \"$user\", \"public\"".to_string())
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

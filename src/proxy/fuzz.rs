//! Fuzz targets on stable Rust (proptest): the frontend message path
//! (startup packet parsing and routing, then the client→upstream relay with
//! its header checks and rewrites) and the rewriter, fed with mutations of
//! the checked-in seed corpus under `tests/fuzz/` and with random bytes.
//! Properties: no panic, no hang, and bytes the relay forwards untouched are
//! exactly the client's. CI runs `PGSHIFT_FUZZ_CASES` cases per target
//! (default 10,000); longer runs go by hand, e.g.
//! `PGSHIFT_FUZZ_CASES=200000 cargo test --release --lib fuzz`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::Index;

use super::placement::Placement;
use super::relay::{self, ClientLimits, RelayEnd, SessionState};
use crate::rewrite::{Options, Rewriter, VersionView};
use crate::routing::RouteRule;
use crate::state::Phase;
use crate::state::versions::{LiveMigration, Versions};

fn cases() -> u32 {
    std::env::var("PGSHIFT_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

fn corpus_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fuzz/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("the seed corpus is checked in")
}

/// The frontend seeds: one hex line per input, after its comment line.
fn frontend_seeds() -> Vec<Vec<u8>> {
    corpus_file("frontend.hex")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

/// The rewriter's seeds: `tests/fuzz/rewrite.sql`, and every statement of
/// Postgres's regression SQL that the rewriter's scan flags.
fn rewrite_seeds() -> Vec<Vec<u8>> {
    let scan = crate::rewrite::Scan::new("public");
    corpus_file("rewrite.sql")
        .lines()
        .filter(|l| !l.starts_with("--") && !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .chain(
            crate::rewrite::corpus::statements()
                .into_iter()
                .filter(|(_, s)| scan.flags(s))
                .map(|(_, s)| s.into_bytes()),
        )
        .collect()
}

/// A seed (or several spliced together) with byte-level mutations: flips,
/// insertions, truncations and repeated slices, as a mutational fuzzer makes.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let seed = prop::collection::vec(prop::sample::select(seeds), 1..4).prop_map(|s| s.concat());
    let ops = prop::collection::vec((0u8..5, any::<Index>(), any::<Index>(), any::<u8>()), 0..6);
    prop_oneof![
        9 => (seed, ops).prop_map(|(mut input, ops)| {
            for (op, at, len, byte) in ops {
                if input.is_empty() {
                    input.push(byte);
                    continue;
                }
                let i = at.index(input.len());
                match op {
                    0 => input[i] ^= byte | 1,
                    1 => input.insert(i, byte),
                    2 => input.truncate(i),
                    3 => {
                        let end = i + len.index(input.len() - i) + 1;
                        let piece = input[i..end.min(input.len())].to_vec();
                        input.splice(i..i, piece);
                    }
                    _ => input[i] = byte,
                }
            }
            input
        }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

fn view() -> VersionView {
    VersionView {
        schema: "public".into(),
        version: "02_new".into(),
        version_schema: "public_02_new".into(),
        views: BTreeMap::from([("users".into(), "users".into())]),
        columns: BTreeMap::from([(
            "users".into(),
            vec![
                ("id".into(), "id".into()),
                ("name".into(), "_pgshift_new_name".into()),
            ],
        )]),
        migrating: BTreeSet::from(["users".into()]),
        version_schemas: BTreeSet::from(["public_01_old".into(), "public_02_new".into()]),
    }
}

fn versions() -> Versions {
    Versions {
        schema: "public".into(),
        current: "01_old".into(),
        current_schema: None,
        pins: BTreeMap::from([("green".into(), "02_new".into())]),
        migration: Some(LiveMigration {
            phase: Phase::Active,
            old: "01_old".into(),
            old_schema: "public_01_old".into(),
            new: "02_new".into(),
            new_schema: "public_02_new".into(),
            old_views: BTreeMap::new(),
            new_views: BTreeMap::new(),
        }),
    }
}

/// Runs the client→upstream relay over `input` (the client's bytes, then
/// EOF), with or without a rewriting placement. Returns how it ended and
/// what reached the upstream.
fn relay_once(input: &[u8], rewriting: bool) -> (RelayEnd, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_tx, rx) = tokio::sync::watch::channel(None);
        let mut placement = rewriting.then(|| {
            Placement::new(
                "02_new".into(),
                Some("public_02_new".into()),
                Some(view()),
                rx,
                None,
            )
        });
        let state = SessionState::new(Options::default());
        let limits = ClientLimits {
            max_message_length: 1 << 16,
            message_timeout: Duration::from_secs(1),
            // Small, so that long messages take the streaming path too.
            max_rewrite_size: 1 << 10,
        };
        let mut client = input;
        let mut upstream = Vec::new();
        let end = tokio::time::timeout(
            Duration::from_secs(10),
            relay::client_to_upstream(
                &mut client,
                &mut upstream,
                BytesMut::new(),
                &state,
                limits,
                placement.as_mut(),
            ),
        )
        .await
        .expect("the relay never hangs on a finite input");
        (end, upstream)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Startup packets: parsing and routing never panic, whatever the bytes.
    #[test]
    fn startup_packets_never_panic(input in mutated(frontend_seeds())) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let packet = runtime.block_on(crate::net::read::read_startup_packet(&mut &input[..]));
        if let Ok(Some(packet)) = packet
            && let Ok(crate::protocol::StartupPacket::Startup { mut message, .. }) = crate::protocol::StartupPacket::parse(packet)
        {
            let rules = [RouteRule { name: "green".into(), application_name: Some("fuzz".into()), ..Default::default() }];
            let _ = crate::routing::route(&message, &versions(), &rules, Some(6432));
            message.set("database", "postgres");
            let _ = message.encode();
        }
    }

    /// The relay without rewrites forwards exactly a prefix of what the
    /// client sent: never a byte it did not send, never reordered.
    #[test]
    fn the_relay_forwards_a_prefix_of_the_input(input in mutated(frontend_seeds())) {
        let (end, upstream) = relay_once(&input, false);
        prop_assert!(input.starts_with(&upstream), "forwarded bytes differ from the input ({end:?})");
        // At the client's EOF, only an incomplete header is held back.
        if matches!(end, RelayEnd::ClientClosed) {
            prop_assert!(input.len() - upstream.len() < 5, "{} bytes held back", input.len() - upstream.len());
        }
    }

    /// The relay with a rewriting session never panics or hangs.
    #[test]
    fn the_rewriting_relay_never_panics(input in mutated(frontend_seeds())) {
        let _ = relay_once(&input, true);
    }

    /// The rewriter on any text, with either string setting: no panic;
    /// text the scan clears is never changed; every edit lies on the text's
    /// character boundaries and leaves the rest as it was.
    #[test]
    fn the_rewriter_never_panics(input in mutated(rewrite_seeds()), scs in any::<bool>()) {
        let text = String::from_utf8_lossy(&input);
        let rewriter = Rewriter::new(view());
        let options = Options { standard_conforming_strings: scs };
        let edits = rewriter.edits(&text, options);
        if !rewriter.may_need_rewrite(&text) {
            prop_assert!(edits.is_empty(), "{edits:?}");
        }
        let mut last = 0;
        for e in &edits {
            prop_assert!(e.start >= last && e.start <= e.end && e.end <= text.len(), "{edits:?}");
            prop_assert!(text.is_char_boundary(e.start) && text.is_char_boundary(e.end));
            last = e.end;
        }
    }
}

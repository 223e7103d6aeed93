//! Protocol coverage through the proxy with tokio-postgres and raw messages:
//! simple and extended queries, pipelining, portals, binary values, COPY,
//! LISTEN/NOTIFY, notices, ParameterStatus, FunctionCall, errors in a
//! transaction, Terminate, startup parameters and cancel.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

use crate::harness::{self, Env, Raw, message, query, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_with_several_statements() {
    let env = Env::start().await;
    let client = env.connect().await;
    let msgs = client
        .simple_query("CREATE TABLE t (id int, name text); INSERT INTO t VALUES (1, 'a'), (2, NULL); SELECT id, name FROM t ORDER BY id")
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((r.get(0).map(str::to_string), r.get(1).map(str::to_string)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (Some("1".into()), Some("a".into())),
            (Some("2".into()), None)
        ]
    );
    let empty = client.simple_query("").await.unwrap();
    assert!(
        empty
            .iter()
            .all(|m| !matches!(m, SimpleQueryMessage::Row(_)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_named_unnamed_binary_and_pipelined() {
    let env = Env::start().await;
    let client = env.connect().await;
    client
        .batch_execute(
            "CREATE TABLE kv (k int PRIMARY KEY, v bytea, f float8, ts timestamptz DEFAULT now())",
        )
        .await
        .unwrap();
    // Named statement, binary parameters (bytea, float8) and binary results.
    let insert = client
        .prepare("INSERT INTO kv (k, v, f) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    let blob: Vec<u8> = (0..=255u8).collect();
    for k in 0..20i32 {
        client
            .execute(&insert, &[&k, &blob, &(k as f64 * 1.5)])
            .await
            .unwrap();
    }
    // Unnamed statement with typed parameters.
    let row = client
        .query_one("SELECT v, f FROM kv WHERE k = $1::int", &[&7i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), blob);
    assert_eq!(row.get::<_, f64>(1), 10.5);
    let typed = client
        .prepare_typed("SELECT $1::int8 + 1", &[Type::INT8])
        .await
        .unwrap();
    assert_eq!(
        client
            .query_one(&typed, &[&41i64])
            .await
            .unwrap()
            .get::<_, i64>(0),
        42
    );
    // Pipelining: tokio-postgres sends queued requests without waiting.
    let select = client
        .prepare("SELECT k, f FROM kv WHERE k = $1")
        .await
        .unwrap();
    let futures = (0..20i32).map(|k| {
        let client = &client;
        let select = &select;
        async move {
            client
                .query_one(select, &[&k])
                .await
                .unwrap()
                .get::<_, i32>(0)
        }
    });
    let got = futures_util::future::join_all(futures).await;
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_with_row_limits() {
    let env = Env::start().await;
    let mut client = env.connect().await;
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT g FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = tx.query_portal(&portal, 3).await.unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.iter().map(|r| r.get::<_, i32>(0)));
    }
    tx.commit().await.unwrap();
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_returns_results_before_sync() {
    let env = Env::start().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    // Parse (unnamed, "SELECT 1", no parameter types), then Flush, no Sync.
    raw.send(&message(b'P', b"\0SELECT 1\0\0\0")).await;
    raw.send(&message(b'H', b"")).await;
    let parse_complete = raw.recv().await.unwrap();
    assert_eq!(
        parse_complete.tag, b'1',
        "ParseComplete arrives on Flush alone"
    );
    raw.send(&message(b'S', b"")).await;
    assert_eq!(raw.recv().await.unwrap().tag, b'Z');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_out_and_copy_fail() {
    let env = Env::start().await;
    let client = env.connect().await;
    client
        .batch_execute("CREATE TABLE c (id int, body text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let out: Vec<bytes::Bytes> = client
        .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(out.concat(), data.as_bytes());
    // Dropping an unfinished sink sends CopyFail; the COPY must roll back.
    {
        let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"9999\tnever\n"))
            .await
            .unwrap();
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 5000);
    // CopyFail by hand, with the server's answer checked.
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    raw.send(&query("COPY c FROM STDIN")).await;
    assert_eq!(raw.recv().await.unwrap().tag, b'G');
    raw.send(&message(b'd', b"1\tpartial\n")).await;
    raw.send(&message(b'f', b"client gave up\0")).await;
    let msgs = raw.until_ready().await;
    let error = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .expect("CopyFail gives an error");
    assert_eq!(error.field(b'C').as_deref(), Some("57014"));
    assert!(error.field(b'M').unwrap().contains("client gave up"));
}

/// Connects with a channel that receives the connection's asynchronous messages.
async fn connect_with_messages(
    url: &str,
) -> (
    tokio_postgres::Client,
    mpsc::UnboundedReceiver<AsyncMessage>,
) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(msg)) = stream.next().await {
            let _ = tx.send(msg);
        }
    });
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_and_notices() {
    let env = Env::start().await;
    let url = env.proxy_url("postgres", "postgres");
    let (listener, mut messages) = connect_with_messages(&url).await;
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let notifier = env.connect().await;
    notifier
        .batch_execute("NOTIFY jobs, 'payload 1'")
        .await
        .unwrap();
    notifier
        .execute("SELECT pg_notify('jobs', 'payload 2')", &[])
        .await
        .unwrap();
    let mut payloads = Vec::new();
    while payloads.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), messages.recv()).await {
            Ok(Some(AsyncMessage::Notification(n))) => {
                assert_eq!(n.channel(), "jobs");
                payloads.push(n.payload().to_string());
            }
            Ok(Some(_)) => {}
            other => panic!("expected notifications, got {other:?}"),
        }
    }
    assert_eq!(payloads, ["payload 1", "payload 2"]);
    listener
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'careful: %', 42; END $$")
        .await
        .unwrap();
    let notice = loop {
        match tokio::time::timeout(Duration::from_secs(10), messages.recv()).await {
            Ok(Some(AsyncMessage::Notice(n))) => break n,
            Ok(Some(_)) => {}
            other => panic!("expected a notice, got {other:?}"),
        }
    };
    assert_eq!(notice.message(), "careful: 42");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_status_changes_reach_the_client() {
    let env = Env::start().await;
    let (mut raw, startup) = Raw::startup(env.proxy, &[("application_name", "before")]).await;
    let initial: Vec<String> = startup
        .iter()
        .filter(|m| m.tag == b'S')
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert!(
        initial.iter().any(|s| s == "application_name\0before\0"),
        "{initial:?}"
    );
    raw.send(&query("SET application_name = 'after'")).await;
    let msgs = raw.until_ready().await;
    let status = msgs
        .iter()
        .find(|m| m.tag == b'S')
        .expect("a ParameterStatus");
    assert_eq!(&status.body[..], b"application_name\0after\0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call() {
    let env = Env::start().await;
    let client = env.connect().await;
    let oid: u32 = client
        .query_one("SELECT 'int4pl'::regproc::oid", &[])
        .await
        .unwrap()
        .get(0);
    let (mut raw, _) = Raw::startup(env.proxy, &[]).await;
    // FunctionCall: oid, 1 format code (binary), 2 args of 4 bytes, binary result.
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&2u16.to_be_bytes());
    for arg in [40i32, 2] {
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&arg.to_be_bytes());
    }
    body.extend_from_slice(&1u16.to_be_bytes());
    raw.send(&message(b'F', &body)).await;
    let msgs = raw.until_ready().await;
    let result = msgs
        .iter()
        .find(|m| m.tag == b'V')
        .expect("FunctionCallResponse");
    assert_eq!(&result.body[..], &[0, 0, 0, 4, 0, 0, 0, 42]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_transaction_then_rollback() {
    let env = Env::start().await;
    let client = env.connect().await;
    client
        .batch_execute("CREATE TABLE e (id int)")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO e VALUES (1)")
        .await
        .unwrap();
    let err = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22012");
    let err = client.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02", "the transaction is aborted");
    client.batch_execute("ROLLBACK").await.unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM e", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_reach_postgres() {
    let env = Env::start().await;
    let url = format!(
        "{}&application_name=orders-api&options=-c%20statement_timeout%3D1234%20-c%20search_path%3Dfoo",
        env.proxy_url("postgres", "postgres")
    );
    let client = harness::connect(&url).await;
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('statement_timeout'), current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    let got: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(got, ("orders-api".into(), "1234ms".into(), "foo".into()));
    // client_encoding, which tokio-postgres always sends as UTF8, by hand.
    let (mut raw, startup) = Raw::startup(env.proxy, &[("client_encoding", "LATIN1")]).await;
    assert!(
        startup
            .iter()
            .any(|m| m.tag == b'S' && &m.body[..] == b"client_encoding\0LATIN1\0")
    );
    raw.send(&query("SELECT 'caf' || chr(233)")).await;
    let row = raw
        .until_ready()
        .await
        .into_iter()
        .find(|m| m.tag == b'D')
        .unwrap();
    assert_eq!(
        &row.body[row.body.len() - 4..],
        b"caf\xe9",
        "Postgres converts to LATIN1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_leaves_no_backend() {
    let env = Env::start().await;
    let direct = env.direct().await;
    let (mut raw, _) = Raw::startup(env.proxy, &[("application_name", "terminator")]).await;
    assert_eq!(harness::backends_named(&direct, "terminator").await, 1);
    raw.send(&message(b'X', b"")).await;
    assert!(
        raw.recv().await.is_none(),
        "the proxy closes after Terminate"
    );
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            harness::backends_named(&direct, "terminator").await == 0
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_right_backend() {
    let env = Env::start().await;
    let victim = env.connect().await;
    let bystander = env.connect().await;
    let token = victim.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { victim.batch_execute("SELECT pg_sleep(30)").await });
    let other = tokio::spawn(async move {
        bystander
            .query_one("SELECT 7 FROM pg_sleep(1.5)", &[])
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(NoTls).await.unwrap();
    let err = sleeper.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Only the victim was cancelled.
    let row = other.await.unwrap().unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_with_a_wrong_key_cancels_nothing() {
    let env = Env::start().await;
    let client = env.connect().await;
    let work =
        tokio::spawn(async move { client.query_one("SELECT 1 FROM pg_sleep(1)", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for pid in 0..5i32 {
        let mut raw = Raw::connect(env.proxy).await;
        raw.send(&pgshift::protocol::startup::cancel_request(
            pid,
            &12345i32.to_be_bytes(),
        ))
        .await;
        assert!(raw.recv().await.is_none());
    }
    assert!(work.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_upstream() {
    use pgshift::net::UpstreamConfig;
    let env = Env::with(pgshift::cluster::ClusterOptions::default(), |_| {}).await;
    let mut config = env.config.clone();
    config.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.upstream = Some(UpstreamConfig::from_url(&env.cluster.socket_url("postgres")).unwrap());
    let (addr, _stop, _task) = harness::spawn_proxy(&mut config).await;
    let url =
        format!("postgres://postgres@{addr}/postgres?sslmode=disable&application_name=via-unix");
    let client = harness::connect(&url).await;
    // Postgres sees a Unix-socket client: no client address.
    let row = client
        .query_one(
            "SELECT client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    // Cancel travels over the socket too.
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.batch_execute("SELECT pg_sleep(30)").await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    token.cancel_query(NoTls).await.unwrap();
    let (client, result) = sleeper.await.unwrap();
    assert_eq!(sqlstate(&result.unwrap_err()), "57014");
    drop(client);
    let direct = env.direct().await;
    assert!(
        harness::eventually(Duration::from_secs(5), || async {
            harness::backends_named(&direct, "via-unix").await == 0
        })
        .await
    );
}

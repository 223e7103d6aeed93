//! Large payloads pass through intact: a 10 MB query text, a 100 MB COPY in
//! both directions, and a row with a 50 MB value.

use futures_util::{SinkExt, TryStreamExt};

use crate::harness::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_query_text() {
    let env = Env::start().await;
    let client = env.connect().await;
    let literal = "q".repeat(10 << 20);
    let sql = format!(
        "SELECT length('{literal}'), md5('{literal}') = md5(repeat('q', {}))",
        10 << 20
    );
    let rows = client.simple_query(&sql).await.unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_string(), r.get(1).unwrap().to_string()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(row, ((10 << 20).to_string(), "t".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_copy_in_and_out() {
    let env = Env::start().await;
    let client = env.connect().await;
    client
        .batch_execute("CREATE TABLE big (id int, payload text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY big FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let line_payload = "p".repeat(1000);
    let mut sent = 0usize;
    let mut id = 0;
    let mut hasher_input_len = 0usize;
    while sent < 100 << 20 {
        let mut chunk = String::with_capacity(1 << 20);
        for _ in 0..1000 {
            chunk.push_str(&format!("{id}\t{line_payload}\n"));
            id += 1;
        }
        sent += chunk.len();
        hasher_input_len += chunk.len();
        sink.send(bytes::Bytes::from(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), id as u64);
    let direct = env.direct().await;
    let row = direct
        .query_one(
            "SELECT count(*), sum(length(payload))::int8, count(DISTINCT id) FROM big",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), id as i64);
    assert_eq!(row.get::<_, i64>(1), id as i64 * 1000);
    assert_eq!(row.get::<_, i64>(2), id as i64);
    let out: Vec<bytes::Bytes> = client
        .copy_out("COPY (SELECT * FROM big ORDER BY id) TO STDOUT")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let total: usize = out.iter().map(|b| b.len()).sum();
    assert_eq!(total, hasher_input_len, "COPY TO returns every byte");
    let first_line_end = out[0].iter().position(|b| *b == b'\n').unwrap();
    assert_eq!(
        &out[0][..first_line_end],
        format!("0\t{line_payload}").as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_value_round_trips() {
    let env = Env::start().await;
    let client = env.connect().await;
    client
        .batch_execute("CREATE TABLE blobs (id int, data bytea)")
        .await
        .unwrap();
    let value: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    client
        .execute("INSERT INTO blobs VALUES (1, $1)", &[&value])
        .await
        .unwrap();
    let back: Vec<u8> = client
        .query_one("SELECT data FROM blobs WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back.len(), value.len());
    assert!(back == value, "the 50 MB value came back changed");
}

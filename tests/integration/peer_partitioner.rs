//! konsumer's default partitioner against librdkafka's `murmur2_random` (the Java client's
//! default): the same keys must land on the same partitions.

use std::time::Duration;

use futures_util::future::join_all;
use konsumer::partitioner::partition_for_key;
use konsumer_actors::testkit::tansu::{Storage, TansuBroker};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[actix::test]
async fn keyed_records_land_where_librdkafka_puts_them() {
    let broker = TansuBroker::start(Storage::Memory);
    broker.create_topic("keyed", 6);
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("an rdkafka producer from a valid configuration");
    // Keys of every length class murmur2 treats differently (tail of 0-3 bytes), text and binary.
    let keys: Vec<Vec<u8>> = (0..300u32)
        .map(|i| match i % 3 {
            0 => format!("user-{i}").into_bytes(),
            1 => i.to_le_bytes()[..(i as usize % 4) + 1].to_vec(),
            _ => "k".repeat(i as usize % 37).into_bytes(),
        })
        .collect();
    let sends = keys.iter().map(|key| {
        producer.send(
            FutureRecord::<[u8], [u8]>::to("keyed")
                .key(key.as_slice())
                .payload(b"v"),
            Duration::from_secs(10),
        )
    });
    let mut used = std::collections::HashSet::new();
    for (key, delivered) in keys.iter().zip(join_all(sends).await) {
        let delivery = delivered.unwrap_or_else(|(e, _)| panic!("not delivered: {e}"));
        assert_eq!(
            delivery.partition,
            partition_for_key(key, 6),
            "key {key:?}: librdkafka chose {}",
            delivery.partition
        );
        used.insert(delivery.partition);
    }
    assert_eq!(used.len(), 6, "the keys spread over every partition");
}

//! Prints a cluster's brokers, topics, partitions and leaders through konsumer.
//!
//! `cargo run --example metadata -- 127.0.0.1:9092 [more brokers...]`

use konsumer::{ClientConfig, Error};
use konsumer_actors::messages::GetMetadata;
use konsumer_actors::Cluster;

fn main() {
    let bootstrap: Vec<String> = std::env::args().skip(1).collect();
    if bootstrap.is_empty() {
        eprintln!("usage: metadata HOST:PORT [HOST:PORT...]");
        std::process::exit(2);
    }
    let system = actix::System::new();
    if let Err(error) = system.block_on(print_metadata(bootstrap)) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

async fn print_metadata(bootstrap: Vec<String>) -> Result<(), Error> {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let cluster = Cluster::connect(ClientConfig::new(bootstrap), log).await?;
    let metadata = cluster
        .send(GetMetadata { refresh: false })
        .await
        .map_err(|_| Error::Shutdown("cluster".into()))??;
    println!(
        "cluster {} (controller: {})",
        metadata.cluster_id.as_deref().unwrap_or("(no id)"),
        metadata
            .controller_id
            .map_or("none".to_string(), |id| id.to_string())
    );
    for broker in metadata.brokers.values() {
        println!("broker {} at {}", broker.node_id, broker.address());
    }
    for topic in metadata.topics.values() {
        println!(
            "topic {} ({} partitions)",
            topic.name,
            topic.partitions.len()
        );
        for p in &topic.partitions {
            let leader = p.leader.map_or("none".to_string(), |l| l.to_string());
            println!(
                "  partition {:>3}  leader {leader}  replicas {:?}",
                p.partition, p.replicas
            );
        }
    }
    Ok(())
}

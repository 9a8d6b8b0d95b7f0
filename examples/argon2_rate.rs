//! Raw argon2id rate on this machine, for `bench/login_flood.sh`: hashes per
//! second with the configured cost on `threads` threads, each reusing one
//! block buffer (no HTTP, no database, no queue).
//!
//! cargo run --release --example argon2_rate -- [threads] [seconds] [memory_kib] [iterations]
// A measuring tool for the benchmark: any failure ends the run, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};

fn main() {
    let arg = |i: usize, default: u64| -> u64 {
        std::env::args()
            .nth(i)
            .map(|a| a.parse().expect("numeric argument"))
            .unwrap_or(default)
    };
    let threads = arg(
        1,
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    );
    let seconds = arg(2, 10);
    let memory_kib = arg(3, 19456) as u32;
    let iterations = arg(4, 2) as u32;
    let params = Params::new(memory_kib, iterations, 1, None).expect("argon2 parameters");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut blocks = vec![Block::new(); params.block_count()];
                let mut out = [0u8; 32];
                let mut hashes = 0u64;
                while Instant::now() < deadline {
                    argon
                        .hash_password_into_with_memory(
                            b"bench password",
                            b"sixteen byte slt",
                            &mut out,
                            &mut blocks,
                        )
                        .expect("argon2");
                    hashes += 1;
                }
                hashes
            })
        })
        .collect();
    let total: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    println!("{:.1}", total as f64 / seconds as f64);
}

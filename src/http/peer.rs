//! The connections themselves: how many each client address holds, and the
//! socket a request came on, for revocation streams, which must notice a
//! reader that hung up while nothing is being written (actix only finds out
//! when a write fails, up to two keep-alives later, and the stream's slot
//! would be held all that time).

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};

use actix_web::HttpRequest;
use actix_web::dev::Extensions;

/// The socket of a connection, recorded when it is accepted.
#[derive(Clone, Copy)]
struct PeerFd(RawFd);

/// A second handle on the request's connection, to wait on for its end
/// (`revocation::stream`).
pub fn watch(req: &HttpRequest) -> Option<tokio::net::TcpStream> {
    let PeerFd(fd) = *req.conn_data::<PeerFd>()?;
    // SAFETY: `fd` is the socket this request is being served on; it stays
    // open at least until the request is answered, which has not happened.
    // The duplicate made here is ours, closed when it is dropped.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .ok()?;
    let socket = std::net::TcpStream::from(owned);
    socket.set_nonblocking(true).ok()?;
    tokio::net::TcpStream::from_std(socket).ok()
}

/// Set on a connection whose request was refused in a way that ends it
/// (a chunked body): nothing more is served on it.
#[derive(Default)]
struct Ending(std::sync::atomic::AtomicBool);

/// Marks the request's connection as ending. actix keeps serving requests
/// pipelined behind a `Connection: close` response, so the header alone
/// does not end it: every later request on it is refused too.
pub fn end_connection(req: &HttpRequest) {
    if let Some(ending) = req.conn_data::<Ending>() {
        ending.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether an earlier request on this connection ended it.
pub fn is_ending(req: &HttpRequest) -> bool {
    req.conn_data::<Ending>()
        .is_some_and(|ending| ending.0.load(std::sync::atomic::Ordering::Relaxed))
}

/// Open connections per client address on a listener, so that one address
/// cannot hold every connection (`http.max_connections` is shared by all).
/// Trusted proxies are not limited: many clients share their address.
pub struct PeerConnections {
    per_address: usize,
    trusted: Vec<ipnet::IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropped (with the connection's data) when the
/// connection ends.
struct Counted {
    table: Arc<PeerConnections>,
    address: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl PeerConnections {
    /// `per_address` 0: no limit.
    pub fn new(per_address: usize, trusted: Vec<ipnet::IpNet>) -> PeerConnections {
        PeerConnections {
            per_address,
            trusted,
            open: Mutex::default(),
        }
    }

    /// `HttpServer::on_connect`: remembers the connection's socket, and
    /// closes it at once when its address already holds its share.
    pub fn on_connect(self: &Arc<Self>, connection: &dyn Any, data: &mut Extensions) {
        let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        data.insert(PeerFd(tcp.as_raw_fd()));
        data.insert(Ending::default());
        let Ok(peer) = tcp.peer_addr() else {
            return;
        };
        // IPv6 clients get a /64, as the login limits count them.
        let address = match peer.ip().to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            v4 => v4,
        };
        if self.per_address == 0 || self.trusted.iter().any(|net| net.contains(&address)) {
            return;
        }
        let admitted = {
            let mut open = self.lock();
            let count = open.entry(address).or_insert(0);
            let admitted = *count < self.per_address;
            if admitted {
                *count += 1;
            }
            admitted
        };
        if !admitted {
            // Closed before a byte is read: actix sees the end at once and
            // frees the connection's place.
            if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                let _ = std::net::TcpStream::from(fd).shutdown(std::net::Shutdown::Both);
            }
            tracing::debug!(
                "connection refused: its address holds http.max_connections_per_address"
            );
            return;
        }
        data.insert(Counted {
            table: self.clone(),
            address,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

//! `TCP_NODELAY` on this process's connections to the Lambda Runtime API.
//!
//! A streamed response reaches the Runtime API as several small writes (the request head and
//! the metadata prelude, the eight-byte separator, the body frames, the terminating chunk).
//! `lambda_runtime_api_client` 1.1 builds its `HttpConnector` without `TCP_NODELAY`, and
//! `lambda_runtime::Runtime` takes no client or connector from outside. With Nagle's
//! algorithm on, the second write waits until the first is acknowledged, and the Runtime API,
//! whose socket is in delayed-ACK ("ping-pong") mode whenever it answered `/next` at once,
//! acknowledges after 40 ms. Every streamed answer then waits 40 ms.
//!
//! Until the runtime sets the option itself (see `docs/lambda-runtime.md` for the upstream
//! change), [`RuntimeApiNoDelay::apply`] finds the process's TCP sockets whose peer is
//! `AWS_LAMBDA_RUNTIME_API`, takes a second descriptor of each with `pidfd_getfd(2)` (socket
//! options belong to the socket, not the descriptor) and sets `TCP_NODELAY` on it. No unsafe
//! code: the descriptors are owned and closed by `rustix`. It fails open: where the kernel
//! refuses (no `pidfd_getfd`, a seccomp filter), the answer is the same, only 40 ms later, and
//! one warning says so.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

/// What [`RuntimeApiNoDelay::apply`] did on one call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Runtime API connections that had Nagle's algorithm on and now have it off.
    pub set: usize,
    /// Sockets that were already known (checked on an earlier call) and were skipped.
    pub known: usize,
}

/// Sets `TCP_NODELAY` on the connections this process holds to the Runtime API.
#[derive(Debug)]
pub struct RuntimeApiNoDelay {
    peers: Vec<SocketAddr>,
    pidfd: OwnedFd,
    /// `/proc/self/fd` link targets (`socket:[inode]`) already checked: a connection is set
    /// once, and only sockets opened since the last call cost a system call.
    seen: Mutex<HashSet<String>>,
    warned: std::sync::atomic::AtomicBool,
}

impl RuntimeApiNoDelay {
    /// For the Runtime API named by `AWS_LAMBDA_RUNTIME_API` (`host:port`). `None` outside
    /// Lambda, or where this kernel cannot give a process descriptor (logged once).
    pub fn from_env() -> Option<Self> {
        let endpoint = std::env::var("AWS_LAMBDA_RUNTIME_API").ok()?;
        Self::for_endpoint(&endpoint)
    }

    /// For a Runtime API at `endpoint` (`host:port`).
    pub fn for_endpoint(endpoint: &str) -> Option<Self> {
        let peers: Vec<SocketAddr> = match endpoint.to_socket_addrs() {
            Ok(addresses) => addresses.collect(),
            Err(error) => {
                tracing::warn!(endpoint, %error, "the Runtime API address does not resolve; TCP_NODELAY not set");
                return None;
            }
        };
        match pidfd_open(getpid(), PidfdFlags::empty()) {
            Ok(pidfd) => Some(Self {
                peers,
                pidfd,
                seen: Mutex::new(HashSet::new()),
                warned: false.into(),
            }),
            Err(error) => {
                tracing::warn!(%error, "pidfd_open refused; streamed responses may wait for delayed ACKs");
                None
            }
        }
    }

    /// Sets `TCP_NODELAY` on every Runtime API connection not seen before. Call it at the start
    /// of each invocation: the response goes out on the connection that delivered the event.
    pub fn apply(&self) -> Applied {
        let mut applied = Applied::default();
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return applied;
        };
        let Ok(mut seen) = self.seen.lock() else {
            return applied;
        };
        // Only sockets still open are remembered, so the set stays as small as the fd table.
        let mut still_open = HashSet::with_capacity(seen.len());
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if !target.starts_with("socket:") {
                continue;
            }
            if let Some(known) = seen.take(target.as_ref()) {
                applied.known += 1;
                still_open.insert(known);
                continue;
            }
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            match self.set_if_runtime_api(fd) {
                Ok(Some(true)) => {
                    applied.set += 1;
                    still_open.insert(target.into_owned());
                }
                // A connection still being opened has no peer yet: look again next time.
                Ok(None) => {}
                Ok(Some(false)) => {
                    still_open.insert(target.into_owned());
                }
                Err(error) => {
                    if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(%error, "TCP_NODELAY not set on the Runtime API connection; streamed responses may wait for delayed ACKs");
                    }
                }
            }
        }
        *seen = still_open;
        applied
    }

    /// `Some(true)` when `fd` is a Runtime API connection (now without Nagle), `Some(false)`
    /// when it is another socket, `None` when it has no peer yet.
    fn set_if_runtime_api(&self, fd: i32) -> rustix::io::Result<Option<bool>> {
        let socket = pidfd_getfd(&self.pidfd, fd, PidfdGetfdFlags::empty())?;
        let Some(peer) = rustix::net::getpeername(&socket)
            .ok()
            .flatten()
            .and_then(|address| SocketAddr::try_from(address).ok())
        else {
            return Ok(None);
        };
        if !self.peers.contains(&peer) {
            return Ok(Some(false));
        }
        rustix::net::sockopt::set_tcp_nodelay(&socket, true)?;
        Ok(Some(true))
    }
}

/// Whether the socket `fd` of process `pid` has `TCP_NODELAY` set; for tests that check a
/// function's Runtime API connection from outside its process.
pub fn process_socket_has_nodelay(pid: u32, fd: i32) -> rustix::io::Result<bool> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or(rustix::io::Errno::INVAL)?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
    let socket = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())?;
    rustix::net::sockopt::tcp_nodelay(&socket)
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn sets_nodelay_on_connections_to_the_runtime_api_only_and_once() {
        let runtime_api = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_runtime = TcpStream::connect(runtime_api.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_runtime.nodelay().unwrap());

        let nodelay =
            RuntimeApiNoDelay::for_endpoint(&runtime_api.local_addr().unwrap().to_string())
                .expect("pidfd_open works on this kernel");
        let first = nodelay.apply();
        assert_eq!(first.set, 1, "{first:?}");
        assert!(to_runtime.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap(), "other connections keep Nagle");

        // A second call skips what it saw; a new connection is found.
        let again = TcpStream::connect(runtime_api.local_addr().unwrap()).unwrap();
        let second = nodelay.apply();
        assert_eq!(second.set, 1, "{second:?}");
        assert!(second.known >= 2, "{second:?}");
        assert!(again.nodelay().unwrap());
        assert!(
            process_socket_has_nodelay(std::process::id(), again.as_raw_fd()).unwrap(),
            "read from outside the socket's descriptor"
        );
    }

    #[test]
    fn an_unresolvable_endpoint_sets_nothing() {
        assert!(RuntimeApiNoDelay::for_endpoint("no-port").is_none());
    }
}

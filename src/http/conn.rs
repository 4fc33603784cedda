//! What one connection may hold: a slot per client address, a share of the memory buffered
//! request bodies may take, and an activity clock that tells the server when a connection has
//! gone without a request for longer than the header timeout, whatever its protocol.
//!
//! hyper's own timer covers only the HTTP/1 request head. A socket that sends nothing, half an
//! HTTP/2 preface, or an HTTP/2 connection that answers PINGs but opens no stream would hold
//! its slot forever; [`Activity`] is what lets the accept loop close all of them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::proxies::TrustedProxies;

/// Request-body bytes buffered at once across all connections.
pub(crate) const BODY_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// The share of [`BODY_MEMORY_BYTES`] one client address may hold (an eighth), so that one
/// address cannot starve everyone else of body memory.
pub(crate) const BODY_MEMORY_PER_ADDRESS_BYTES: usize = BODY_MEMORY_BYTES / 8;

/// The per-address connection slots and body-memory shares of one server.
pub(crate) struct Peers {
    map: Mutex<HashMap<IpAddr, Arc<PeerState>>>,
    max_per_address: usize,
    trusted: TrustedProxies,
    /// Body bytes buffered by every connection together.
    total_body_bytes: AtomicUsize,
}

/// One client address's live connections and buffered body bytes.
#[derive(Default)]
struct PeerState {
    /// Changed only under the map's lock.
    connections: AtomicUsize,
    body_bytes: AtomicUsize,
}

impl Peers {
    /// Slots for at most `max_per_address` connections per address (IPv6: per /64), except for
    /// `trusted` proxies, which carry many clients.
    pub(crate) fn new(max_per_address: usize, trusted: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::new(HashMap::new()),
            max_per_address: max_per_address.max(1),
            trusted,
            total_body_bytes: AtomicUsize::new(0),
        })
    }

    /// A slot for a new connection from `peer`, or `None` when its address already has the most
    /// connections it may have.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        let peer = peer.to_canonical();
        let trusted = self.trusted.trusts(peer);
        let key = address_key(peer);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let state = Arc::clone(map.entry(key).or_default());
        let held = state.connections.load(Ordering::Relaxed);
        if !trusted && held >= self.max_per_address {
            if held == 0 {
                map.remove(&key);
            }
            return None;
        }
        state.connections.store(held + 1, Ordering::Relaxed);
        drop(map);
        Some(PeerSlot {
            peers: Arc::clone(self),
            key,
            state,
            trusted,
        })
    }
}

/// A connection's hold on its address's slot; released on drop.
pub(crate) struct PeerSlot {
    peers: Arc<Peers>,
    key: IpAddr,
    state: Arc<PeerState>,
    trusted: bool,
}

impl PeerSlot {
    /// Reserves `bytes` more of buffered body memory, within the server's total and (except for
    /// a trusted proxy) the address's share. `false` changes nothing.
    pub(crate) fn reserve_body(&self, bytes: usize) -> bool {
        if !take(&self.peers.total_body_bytes, bytes, BODY_MEMORY_BYTES) {
            return false;
        }
        if !self.trusted && !take(&self.state.body_bytes, bytes, BODY_MEMORY_PER_ADDRESS_BYTES) {
            self.peers
                .total_body_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back `bytes` reserved by [`reserve_body`](Self::reserve_body).
    pub(crate) fn release_body(&self, bytes: usize) {
        self.peers
            .total_body_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        if !self.trusted {
            self.state.body_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self
            .peers
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let left = self
            .state
            .connections
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        self.state.connections.store(left, Ordering::Relaxed);
        if left == 0 {
            map.remove(&self.key);
        }
    }
}

/// Adds `bytes` to `counter` unless that would pass `limit`.
fn take(counter: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            held.checked_add(bytes).filter(|&sum| sum <= limit)
        })
        .is_ok()
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one host usually holds
/// a whole /64, so counting single addresses would give it 2^64 slots).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// When a connection last had a request in flight, and how many it has now.
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` at which the last request finished (0: none yet).
    last_done_ms: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicUsize::new(0),
        })
    }

    /// Marks a request as in flight until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    /// The instant at which the connection will have been idle for `timeout`, or `None` while
    /// a request is in flight (its body has its own deadline).
    pub(crate) fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_done_ms.load(Ordering::SeqCst) as u64);
        Some(self.started + last + timeout)
    }
}

/// A request in flight on its connection.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = usize::try_from(self.0.started.elapsed().as_millis()).unwrap_or(usize::MAX);
        self.0.last_done_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::proxies::AddressRange;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_gets_at_most_its_slots_and_gets_them_back() {
        let peers = Peers::new(2, TrustedProxies::default());
        let a = peers.admit(ip("192.0.2.1")).unwrap();
        let _b = peers.admit(ip("192.0.2.1")).unwrap();
        assert!(peers.admit(ip("192.0.2.1")).is_none());
        // Another address, and the same one once a slot is free.
        assert!(peers.admit(ip("192.0.2.2")).is_some());
        drop(a);
        assert!(peers.admit(ip("::ffff:192.0.2.1")).is_some());
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_trusted_proxies_have_no_cap() {
        let peers = Peers::new(
            1,
            TrustedProxies::new(vec![AddressRange::parse("10.0.0.1").unwrap()]),
        );
        let _first = peers.admit(ip("2001:db8::1")).unwrap();
        assert!(peers.admit(ip("2001:db8::2:3")).is_none());
        assert!(peers.admit(ip("2001:db8:0:1::1")).is_some());
        let held: Vec<_> = (0..10)
            .filter_map(|_| peers.admit(ip("10.0.0.1")))
            .collect();
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn the_map_forgets_addresses_without_connections() {
        let peers = Peers::new(4, TrustedProxies::default());
        let slots: Vec<_> = (0..50)
            .map(|n| peers.admit(ip(&format!("198.51.100.{n}"))).unwrap())
            .collect();
        drop(slots);
        assert!(peers.map.lock().unwrap().is_empty());
        assert!(peers.admit(ip("198.51.100.7")).is_some());
    }

    #[test]
    fn body_memory_is_bounded_per_address_and_in_all() {
        let peers = Peers::new(
            1000,
            TrustedProxies::new(vec![AddressRange::parse("10.0.0.1").unwrap()]),
        );
        let one = peers.admit(ip("192.0.2.1")).unwrap();
        assert!(one.reserve_body(BODY_MEMORY_PER_ADDRESS_BYTES));
        assert!(!one.reserve_body(1), "past the address's share");
        let other = peers.admit(ip("192.0.2.2")).unwrap();
        assert!(other.reserve_body(1), "another address is not affected");
        other.release_body(1);
        // A trusted proxy is bound only by the total.
        let proxy = peers.admit(ip("10.0.0.1")).unwrap();
        let rest = BODY_MEMORY_BYTES - BODY_MEMORY_PER_ADDRESS_BYTES;
        assert!(proxy.reserve_body(rest));
        assert!(!proxy.reserve_body(1), "past the total");
        assert!(!other.reserve_body(1), "past the total");
        one.release_body(BODY_MEMORY_PER_ADDRESS_BYTES);
        assert!(other.reserve_body(1));
    }

    #[test]
    fn a_connection_is_idle_only_without_requests_in_flight() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let first = activity.idle_deadline(timeout).unwrap();
        assert!(first <= Instant::now() + timeout);
        let request = activity.begin();
        assert!(activity.idle_deadline(timeout).is_none());
        std::thread::sleep(Duration::from_millis(20));
        drop(request);
        let after = activity.idle_deadline(timeout).unwrap();
        assert!(after > first, "the clock restarts when a request ends");
    }
}

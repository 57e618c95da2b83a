//! Live requests by `HCONN`: how a callback finds the request it is for,
//! and refuses a finished or unknown one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use windows_sys::Win32::System::Iis::HCONN;

use super::handler::Handler;

/// Live requests by `HCONN`, sharded so that requests on different threads
/// rarely meet on a lock.
type Shard = RwLock<HashMap<usize, Arc<dyn Handler>, BuildHasherDefault<IdHasher>>>;

/// Hashes a request id (unique, sequential) with one multiplication, rather
/// than SipHash on every callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

static REGISTRY: LazyLock<[Shard; 16]> = LazyLock::new(Default::default);

fn shard(id: usize) -> &'static Shard {
    &REGISTRY[id % REGISTRY.len()]
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// A fresh connection id (`HCONN`) for an ECB.
pub(crate) fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Makes a request reachable from its `HCONN`.
pub(crate) fn register(id: usize, handler: Arc<dyn Handler>) {
    shard(id)
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, handler);
}

/// After this, callbacks with the request's `HCONN` fail with `ERROR_INVALID_PARAMETER`.
pub(crate) fn unregister(id: usize) {
    shard(id)
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

/// The request an `HCONN` names, if it is live.
pub(super) fn lookup(hconn: HCONN) -> Option<Arc<dyn Handler>> {
    let id = hconn as usize;
    shard(id)
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned()
}

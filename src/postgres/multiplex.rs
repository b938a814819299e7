//! One backend waiting on several things at once: a worker's clients, each a future that waits on
//! its connection's socket or on a timer, run by a small executor over one WaitEventSet (with the
//! latch and the postmaster's death), as pgbench's threads wait on their clients' sockets with one
//! poll. No thread: everything runs in the backend's own, and an ERROR raised in a client (a cancel
//! honoured as the latch wakes the wait) unwinds out of [`run_all`] as from any other wait.
//!
//! A client's leaf future ([`Slot::wait`]) registers what it waits for and returns Pending; the
//! executor waits for the first of them, marks the clients it woke and polls only those (a woken
//! future reads its outcome). Futures are never woken through a `Waker`: the executor knows whom
//! it woke.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// What ended a client's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// its socket is ready as asked
    Socket,
    /// its time came
    Timer,
    /// the latch was set (interrupts were honoured first): the client sees whether it must stop
    Latch,
}

/// A socket to wait on: its descriptor, which connection it is (a descriptor closed and opened
/// again has the same number but is not in the set any more: epoll forgets it as it closes), and
/// the events (WL_SOCKET_READABLE, WL_SOCKET_WRITEABLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketWait {
    pub socket: pg_sys::pgsocket,
    pub token: u64,
    pub events: u32,
}

/// A token no socket wait had: for a connection whose socket may change between waits (while it
/// is being made), each wait its own.
pub fn fresh_token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What one client waits for now.
#[derive(Debug, Default, Clone, Copy)]
struct Interest {
    waiting: bool,
    socket: Option<SocketWait>,
    wake_at: Option<pg_sys::TimestampTz>,
    outcome: Option<Woke>,
}

/// The clients' waits, shared by their futures and the executor.
pub struct Reactor {
    clients: RefCell<Vec<Interest>>,
}

impl Reactor {
    /// For `clients` clients, numbered from 0.
    pub fn new(clients: usize) -> Rc<Reactor> {
        Rc::new(Reactor {
            clients: RefCell::new(vec![Interest::default(); clients]),
        })
    }

    /// Client `id`'s place in it.
    pub fn slot(self: &Rc<Self>, id: usize) -> Slot {
        Slot {
            reactor: Rc::clone(self),
            id,
        }
    }
}

/// A client's place in a [`Reactor`]: what its waits go through.
#[derive(Clone)]
pub struct Slot {
    reactor: Rc<Reactor>,
    id: usize,
}

impl Slot {
    /// Wait until `socket` is ready for `events` (WL_SOCKET_*), `wake_at` comes, or the latch is
    /// set, whichever is first. Neither: a wait on the latch alone.
    pub fn wait(
        &self,
        socket: Option<SocketWait>,
        wake_at: Option<pg_sys::TimestampTz>,
    ) -> impl Future<Output = Woke> + '_ {
        WaitFor {
            slot: self,
            socket,
            wake_at,
            registered: false,
        }
    }

    /// Sleep until `at` (a TimestampTz) or the latch is set (the caller sees whether it must
    /// stop).
    pub async fn sleep_until(&self, at: pg_sys::TimestampTz) {
        self.wait(None, Some(at)).await;
    }
}

/// A client's wait, registered when first polled, ready when the executor marked an outcome.
struct WaitFor<'s> {
    slot: &'s Slot,
    socket: Option<SocketWait>,
    wake_at: Option<pg_sys::TimestampTz>,
    registered: bool,
}

impl Future for WaitFor<'_> {
    type Output = Woke;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Woke> {
        let mut clients = self.slot.reactor.clients.borrow_mut();
        let interest = &mut clients[self.slot.id];
        if !self.registered {
            *interest = Interest {
                waiting: true,
                socket: self.socket,
                wake_at: self.wake_at,
                outcome: None,
            };
            drop(clients);
            self.registered = true;
            return Poll::Pending;
        }
        match interest.outcome.take() {
            Some(woke) => {
                *interest = Interest::default();
                Poll::Ready(woke)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for WaitFor<'_> {
    fn drop(&mut self) {
        if self.registered
            && let Ok(mut clients) = self.slot.reactor.clients.try_borrow_mut()
        {
            clients[self.slot.id] = Interest::default();
        }
    }
}

/// The outcome of `future`, which never waits through a [`Slot`] (a connection waited on alone,
/// an operation over SPI): it is ready the first time it is polled.
pub fn blocking<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("a future with no slot to wait through never pends"),
    }
}

/// A wait event set of this process's latch and the postmaster's death (positions 0 and 1), with
/// room for `sockets` more, in TopMemoryContext.
///
/// # Safety
/// In a backend whose latch is set up; the caller frees the set once (FreeWaitEventSet).
pub unsafe fn latch_wait_set(sockets: usize) -> *mut pg_sys::WaitEventSet {
    // SAFETY: the caller's contract; MyLatch is this process's latch; WL_EXIT_ON_PM_DEATH needs
    // no postmaster handle of ours.
    unsafe {
        let set = crate::postgres::version::long_lived_wait_event_set(
            (FIRST_SOCKET + sockets) as std::ffi::c_int,
        );
        pg_sys::AddWaitEventToSet(
            set,
            pg_sys::WL_LATCH_SET,
            pg_sys::PGINVALID_SOCKET,
            pg_sys::MyLatch,
            std::ptr::null_mut(),
        );
        pg_sys::AddWaitEventToSet(
            set,
            pg_sys::WL_EXIT_ON_PM_DEATH,
            pg_sys::PGINVALID_SOCKET,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        set
    }
}

/// The reactor of a worker's `clients` (at least one): when there are several, each is given its
/// slot (`share`) to wait through. A worker's one connection keeps waiting on its own set instead,
/// as a lone connection's wait costs least: its calls never pend, and the executor only runs its
/// timers.
pub fn reactor_for<T>(clients: &mut [T], share: impl Fn(&mut T, Slot)) -> Rc<Reactor> {
    let reactor = Reactor::new(clients.len().max(1));
    if clients.len() > 1 {
        for (i, client) in clients.iter_mut().enumerate() {
            share(client, reactor.slot(i));
        }
    }
    reactor
}

/// A worker's clients: one per connection (`remotes`), or one of its own (None: over SPI) when
/// there are none.
pub fn clients<T>(remotes: &mut [T]) -> Vec<Option<&mut T>> {
    if remotes.is_empty() {
        vec![None]
    } else {
        remotes.iter_mut().map(Some).collect()
    }
}

/// A client of [`run_all`]: a future borrowing what its worker lends it.
pub type Client<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Run `clients` (client i waits through `reactor.slot(i)`) until all are done.
pub fn run_all(reactor: &Rc<Reactor>, mut clients: Vec<Client<'_>>) {
    let n = clients.len();
    let (mut done, mut left) = (vec![false; n], n);
    let mut to_poll: Vec<usize> = (0..n).collect();
    // (made once: a round allocates nothing)
    let mut sockets = Vec::with_capacity(n);
    let mut set = WaitSet::default();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        for &i in &to_poll {
            if !done[i] && clients[i].as_mut().poll(&mut cx).is_ready() {
                done[i] = true;
                left -= 1;
                reactor.clients.borrow_mut()[i] = Interest::default();
            }
        }
        to_poll.clear();
        if left == 0 {
            return;
        }
        let now = crate::postgres::backend::now();
        sockets.clear();
        let mut first_wake: Option<pg_sys::TimestampTz> = None;
        {
            let mut interests = reactor.clients.borrow_mut();
            for (i, interest) in interests.iter_mut().enumerate() {
                if done[i] || !interest.waiting || interest.outcome.is_some() {
                    continue;
                }
                if let Some(at) = interest.wake_at {
                    if at <= now {
                        interest.outcome = Some(Woke::Timer);
                        to_poll.push(i);
                        continue;
                    }
                    first_wake = Some(first_wake.map_or(at, |f| f.min(at)));
                }
                if let Some(socket) = interest.socket {
                    sockets.push((i, socket));
                }
            }
        }
        if !to_poll.is_empty() {
            continue;
        }
        // (rounded up: a wait of 0 ms would spin until the time comes; no time asked: a second,
        // which a client that forgot to ask for one would otherwise never get back from)
        let timeout_ms = first_wake.map_or(1000, |at| (at - now + 999) / 1000);
        // (the clients whose sockets are ready go in to_poll; the timers are seen at the top of
        // the next round)
        let latch = set.wait(&sockets, timeout_ms, &mut to_poll);
        let mut interests = reactor.clients.borrow_mut();
        if latch {
            to_poll.clear();
            for (i, interest) in interests.iter_mut().enumerate() {
                if !done[i] && interest.waiting {
                    interest.outcome.get_or_insert(Woke::Latch);
                    to_poll.push(i);
                }
            }
        } else {
            for &i in &to_poll {
                interests[i].outcome = Some(Woke::Socket);
            }
        }
        drop(interests);
        if latch {
            // (a cancel or terminate raises its ERROR here, out of every client's wait)
            pg_sys::check_for_interrupts!();
        }
    }
}

/// The latch, the postmaster's death and the waiting clients' sockets, in one WaitEventSet, made
/// again only when the clients waiting on a socket (or their sockets) change: in a closed run
/// every client waits on its socket all the time, so each wait is one epoll_wait.
#[derive(Default)]
struct WaitSet {
    set: Option<std::ptr::NonNull<pg_sys::WaitEventSet>>,
    /// the client and socket at each position from [`FIRST_SOCKET`] (the events as now asked)
    members: Vec<(usize, SocketWait)>,
    fired: Vec<pg_sys::WaitEvent>,
}

/// The first socket's position in the set (after the latch and the postmaster's death).
const FIRST_SOCKET: usize = 2;

impl WaitSet {
    /// Wait up to `timeout_ms` for the latch or one of `sockets` (client, socket, events): whether
    /// the latch was set (it is reset); the clients whose sockets are ready are added to `ready`.
    fn wait(
        &mut self,
        sockets: &[(usize, SocketWait)],
        timeout_ms: i64,
        ready: &mut Vec<usize>,
    ) -> bool {
        let same_members = self.set.is_some()
            && self.members.len() == sockets.len()
            && self
                .members
                .iter()
                .zip(sockets)
                .all(|(m, s)| m.0 == s.0 && m.1.socket == s.1.socket && m.1.token == s.1.token);
        if !same_members {
            self.build(sockets);
        }
        let set = self.set.expect("built above").as_ptr();
        for (position, (member, wanted)) in self.members.iter_mut().zip(sockets).enumerate() {
            if member.1.events != wanted.1.events {
                // SAFETY: the set's own socket event at this position; no latch given.
                unsafe {
                    pg_sys::ModifyWaitEvent(
                        set,
                        (FIRST_SOCKET + position) as std::ffi::c_int,
                        wanted.1.events,
                        std::ptr::null_mut(),
                    )
                };
                member.1.events = wanted.1.events;
            }
        }
        self.fired
            .resize(FIRST_SOCKET + sockets.len(), pg_sys::WaitEvent::default());
        let timeout = timeout_ms.clamp(0, i32::MAX as i64) as std::ffi::c_long;
        // SAFETY: the set built for these members; `fired` has room for every event in it.
        let n = unsafe {
            pg_sys::WaitEventSetWait(
                set,
                timeout,
                self.fired.as_mut_ptr(),
                self.fired.len() as std::ffi::c_int,
                pg_sys::PG_WAIT_EXTENSION,
            )
        };
        let fired = &self.fired[..n.max(0) as usize];
        if fired.iter().any(|e| e.events & pg_sys::WL_LATCH_SET != 0) {
            // SAFETY: this process's latch.
            unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
            return true;
        }
        ready.extend(
            fired
                .iter()
                .filter(|e| {
                    e.events & (pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE) != 0
                })
                .filter_map(|e| {
                    self.members
                        .get((e.pos as usize).checked_sub(FIRST_SOCKET)?)
                })
                .map(|m| m.0),
        );
        false
    }

    /// A new set for `sockets` (the old one freed).
    fn build(&mut self, sockets: &[(usize, SocketWait)]) {
        self.free();
        // SAFETY: a set freed once, in free; MyLatch is this process's latch; each socket is a
        // live connection's, once in the set (one connection per client).
        unsafe {
            let set = latch_wait_set(sockets.len());
            // (kept before a socket is added: an ERROR adding one leaves it to be freed)
            self.set = std::ptr::NonNull::new(set);
            self.members.clear();
            for (_, wait) in sockets {
                pg_sys::AddWaitEventToSet(
                    set,
                    wait.events,
                    wait.socket,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        self.members = sockets.to_vec();
    }

    fn free(&mut self) {
        if let Some(set) = self.set.take() {
            // SAFETY: the set made in build, freed once (then None).
            unsafe { pg_sys::FreeWaitEventSet(set.as_ptr()) };
        }
    }
}

impl Drop for WaitSet {
    /// Freed when the clients are done, or when an ERROR unwinds out of the wait.
    fn drop(&mut self) {
        self.free();
    }
}

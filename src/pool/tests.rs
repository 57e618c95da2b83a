//! The pool's tests: jobs, wake-ups, yielding and bulk transfers.

use super::kernel::{current_tid, runnable};
use super::patience::Patience;
use super::*;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn runs_every_job_and_survives_a_panic() {
    let pool = Pool::new("test-pool", 3, 2, YIELD_TIME).unwrap();
    let (tx, rx) = mpsc::channel();
    pool.spawn(|| panic!("boom"));
    for i in 0..100 {
        let tx = tx.clone();
        pool.spawn(move || tx.send(i).unwrap());
    }
    let mut got: Vec<i32> = (0..100).map(|_| rx.recv().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

/// Waits until all of `pool`'s threads sleep.
fn wait_all_asleep(pool: &Pool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = pool.shared.lock();
        if st.idle.len() == st.threads.len() {
            return;
        }
        drop(st);
        assert!(Instant::now() < deadline, "the pool's threads never slept");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Queues a job and waits for it to run, after a pause well past
/// [`YIELD_TIME`] when `pause`.
fn one_job(pool: &Pool, pause: bool) {
    if pause {
        wait_all_asleep(pool);
        thread::sleep(YIELD_TIME * 20);
    }
    let (tx, rx) = mpsc::channel();
    pool.spawn(move || tx.send(()).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn jobs_at_a_low_rate_find_the_thread_asleep_and_it_never_yields() {
    let pool = Pool::new("test-slow", 1, 1, YIELD_TIME).unwrap();
    for _ in 0..20 {
        one_job(&pool, true);
    }
    wait_all_asleep(&pool);
    assert_eq!(
        pool.shared.lock().yielded,
        0,
        "a lone job is not worth yielding for"
    );
}

#[test]
fn jobs_back_to_back_are_taken_while_the_thread_yields() {
    // One job at a time, each queued as soon as the last has run (a
    // client with one connection): the thread's sleeps are short, so it
    // yields for the next job instead, and most jobs find it awake.
    let pool = Pool::new("test-serial", 1, 1, YIELD_TIME).unwrap();
    let jobs = 200;
    for _ in 0..jobs {
        one_job(&pool, false);
    }
    let st = pool.shared.lock();
    assert!(
        st.slept < jobs / 2,
        "the thread slept {} times for {jobs} jobs queued back to back",
        st.slept
    );
}

#[test]
fn a_pool_with_no_yield_time_never_yields() {
    let pool = Pool::new("test-noyield", 1, 1, Duration::ZERO).unwrap();
    for _ in 0..50 {
        one_job(&pool, false);
    }
    wait_all_asleep(&pool);
    assert_eq!(pool.shared.lock().yielded, 0);
}

#[test]
fn patience_yields_only_after_a_short_wait_for_work() {
    let mut p = Patience::default();
    let mut polls = 0;
    let mut poll = || {
        polls += 1;
        Some(())
    };
    assert!(
        p.wait(YIELD_TIME, &mut poll).is_none(),
        "not before any wait"
    );
    assert_eq!(polls, 0);
    // Woken soon, but not for the work it waits for (socket I/O on a
    // runtime thread): no reason to yield.
    p.sleeping();
    p.woken(YIELD_TIME, false);
    assert!(p.wait(YIELD_TIME, || Some(())).is_none());
    // Woken soon for work: the next wait yields until the work comes. (The
    // limit is generous here: on a loaded machine a yield can take longer
    // than YIELD_TIME, when the tests that compute run beside this one.)
    let generous = Duration::from_secs(5);
    p.sleeping();
    p.woken(generous, true);
    assert_eq!(
        p.wait(generous, || {
            polls += 1;
            (polls == 3).then_some(polls)
        }),
        Some(3)
    );
    // A wait in vain lasts YIELD_TIME and ends the yielding.
    let start = Instant::now();
    assert!(p.wait(YIELD_TIME, || None::<()>).is_none());
    assert!(start.elapsed() >= YIELD_TIME);
    assert!(
        p.wait(YIELD_TIME, || Some(())).is_none(),
        "not after a wait in vain"
    );
    // A long sleep, even for work, does not start it again.
    p.sleeping();
    thread::sleep(YIELD_TIME * 2);
    p.woken(YIELD_TIME, true);
    assert!(!p.hot);
    // A limit of zero never yields.
    p.sleeping();
    p.woken(Duration::ZERO, true);
    assert!(p.wait(Duration::ZERO, || Some(())).is_none());
}

#[test]
fn a_thread_woken_for_a_burst_yields_for_more_then_sleeps() {
    // Three jobs already queued when the thread wakes: jobs come faster
    // than a wake-up, so it yields before it sleeps; none comes within
    // YIELD_TIME, so it sleeps.
    let pool = Pool::new("test-burst", 1, 1, YIELD_TIME).unwrap();
    wait_all_asleep(&pool);
    let (tx, rx) = mpsc::channel();
    let wake = {
        let mut st = pool.shared.lock();
        for i in 0..3 {
            let tx = tx.clone();
            st.jobs
                .push_back((Instant::now(), Box::new(move || tx.send(i).unwrap())));
        }
        st.pick_sleeper(Instant::now(), false)
    };
    wake.expect("no thread runs: the first job wakes one")
        .unpark();
    for i in 0..3 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), i);
    }
    wait_all_asleep(&pool);
    let yielded = pool.shared.lock().yielded;
    assert!(yielded > 0, "a thread woken for a burst yields for more");
    // Back to a low rate: the wait was in vain, and each sleep is long,
    // so the thread sleeps at once again.
    for _ in 0..10 {
        one_job(&pool, true);
    }
    let more = pool.shared.lock().yielded - yielded;
    assert_eq!(more, 0, "yielded {more} more times for ten lone jobs");
}

#[test]
fn blocked_threads_do_not_hold_up_the_queue() {
    // Three jobs block one after another: each stalls the queue, so
    // the pool wakes another thread for the next, and the last thread
    // runs the jobs queued behind them. This holds past the `parallel`
    // limit, which counts threads that keep the queue moving.
    let pool = Pool::new("test-block", 4, 1, YIELD_TIME).unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let (started_tx, started_rx) = mpsc::channel();
    for _ in 0..3 {
        let (release_rx, started_tx) = (release_rx.clone(), started_tx.clone());
        pool.spawn(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv();
        });
    }
    for _ in 0..3 {
        started_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("three blocking jobs run at once on a four-thread pool");
    }
    let (tx, rx) = mpsc::channel();
    for i in 0..50 {
        let tx = tx.clone();
        pool.spawn(move || tx.send(i).unwrap());
    }
    for _ in 0..50 {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the free thread runs the queued jobs");
    }
    drop(release_tx);
}

/// Queues `jobs` jobs that each compute for `each` without blocking, and
/// returns how many of them started while another was running.
fn overlapping_starts(pool: &Pool, jobs: usize, each: Duration) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let busy = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for _ in 0..jobs {
        let (busy, overlapped, tx) = (busy.clone(), overlapped.clone(), tx.clone());
        pool.spawn(move || {
            if busy.fetch_add(1, SeqCst) > 0 {
                overlapped.fetch_add(1, SeqCst);
            }
            let start = Instant::now();
            while start.elapsed() < each {
                std::hint::spin_loop();
            }
            busy.fetch_sub(1, SeqCst);
            tx.send(()).unwrap();
        });
    }
    for _ in 0..jobs {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    overlapped.load(SeqCst)
}

#[test]
fn a_backlog_of_cpu_bound_jobs_spreads_up_to_the_parallel_limit() {
    // Jobs that compute for 0.5 ms each, never blocking: one starts
    // every 0.5 ms, so nothing stalls, but the queue falls behind, and
    // the pool runs more than one at a time when `parallel` allows. The
    // backlog lasts 100 ms, so that the second thread it wakes gets a CPU
    // before it is gone even on a loaded machine (with 20 ms, a CI
    // rehearsal running the other tests beside it once saw none overlap).
    let pool = Pool::new("test-cpu", 4, 2, YIELD_TIME).unwrap();
    assert!(
        overlapping_starts(&pool, 200, Duration::from_micros(500)) > 0,
        "CPU-bound jobs ran one at a time"
    );
}

#[test]
fn a_backlog_stays_on_one_thread_when_parallel_is_one() {
    // The same backlog with `parallel` 1 (a Python app): the queue keeps
    // moving, so no second thread joins. A thread preempted for over
    // BUSY_STALL (or, where the kernel cannot be asked, over STALL) lets
    // one in for a job or two, which a loaded machine does now and then;
    // with no limit nearly every job overlaps another.
    let pool = Pool::new("test-one", 4, 1, YIELD_TIME).unwrap();
    let overlapped = overlapping_starts(&pool, 200, Duration::from_micros(200));
    assert!(
        overlapped < 100,
        "{overlapped} of 200 jobs ran beside another with parallel = 1"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn the_kernel_tells_a_running_thread_from_a_blocked_one() {
    let me = current_tid().expect("a thread id on Linux");
    assert!(runnable(me), "the calling thread runs");
    let (tx, rx) = mpsc::channel();
    let (release, wait) = mpsc::channel::<()>();
    let sleeper = thread::spawn(move || {
        tx.send(current_tid().unwrap()).unwrap();
        let _ = wait.recv();
    });
    let tid = rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while runnable(tid) {
        assert!(
            Instant::now() < deadline,
            "a thread blocked on a channel stays runnable"
        );
        thread::sleep(Duration::from_millis(1));
    }
    drop(release);
    sleeper.join().unwrap();
    assert!(!runnable(u32::MAX), "no such thread");
}

#[test]
fn a_long_computation_does_not_hold_up_the_queue() {
    // With `parallel` 1, one job that computes for 300 ms: the jobs
    // queued behind it get another thread after BUSY_STALL rather than
    // waiting for it.
    let pool = Pool::new("test-long", 4, 1, YIELD_TIME).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    pool.spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            std::hint::spin_loop();
        }
        done_tx.send(()).unwrap();
    });
    thread::sleep(Duration::from_millis(5));
    let (tx, rx) = mpsc::channel();
    pool.spawn(move || tx.send(()).unwrap());
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        done_rx.try_recv().is_err(),
        "the short job waited for the long one to finish"
    );
    done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_bulk_transfer_steps_aside_for_queued_jobs() {
    // With `parallel` 1, a job in a bulk transfer no longer counts as
    // running, and a job queued behind it is handed a thread at once;
    // a small transfer changes nothing.
    let pool = Pool::new("test-bulk", 4, 1, YIELD_TIME).unwrap();
    let shared = pool.shared.clone();
    while shared.lock().idle.len() < 4 {
        thread::sleep(Duration::from_millis(1));
    }
    let (queued_tx, queued_rx) = mpsc::channel::<()>();
    let (seen_tx, seen_rx) = mpsc::channel();
    pool.spawn(move || {
        queued_rx.recv().unwrap();
        let running = || shared.lock().running;
        let small = Transfer::begin(BULK - 1);
        let during_small = running();
        drop(small);
        let bulk = Transfer::begin(BULK);
        let during_bulk = running();
        let handed = {
            let st = shared.lock();
            st.waking > 0 || st.jobs.is_empty()
        };
        drop(bulk);
        let after = running();
        let seen = (during_small, during_bulk, handed, after);
        seen_tx.send(seen).unwrap();
    });
    let (tx, rx) = mpsc::channel();
    pool.spawn(move || tx.send(()).unwrap());
    queued_tx.send(()).unwrap();
    let (small, bulk, handed, after) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(small, 1, "a small transfer still counts as running");
    assert_eq!(bulk, 0, "a bulk transfer does not count as running");
    assert!(
        handed,
        "the queued job is handed a thread during the transfer"
    );
    assert!(after >= 1, "the job counts as running again after it");
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn short_jobs_stay_on_few_threads() {
    // A burst of short jobs is served without waking the whole pool.
    let pool = Pool::new("test-few", 32, 2, YIELD_TIME).unwrap();
    let (tx, rx) = mpsc::channel();
    for _ in 0..2000 {
        let tx = tx.clone();
        pool.spawn(move || tx.send(thread::current().id()).unwrap());
    }
    let mut threads: Vec<_> = (0..2000).map(|_| rx.recv().unwrap()).collect();
    threads.sort_unstable_by_key(|id| format!("{id:?}"));
    threads.dedup();
    assert!(
        threads.len() < 32,
        "2000 short jobs woke all {} threads",
        threads.len()
    );
}

#[test]
fn runtime_threads_yield_for_a_response_no_longer_than_parking_costs() {
    let limit = |yield_time| RuntimeWait::new(yield_time).yield_time;
    assert_eq!(limit(YIELD_TIME), RESPONSE_YIELD, "the default is capped");
    assert_eq!(limit(Duration::from_micros(5)), Duration::from_micros(5));
    assert_eq!(
        limit(Duration::ZERO),
        Duration::ZERO,
        "zero still never yields"
    );
}

#[test]
fn a_worker_of_a_web_garden_counts_on_its_share_of_the_cpus() {
    let cpus = super::kernel::cpus();
    assert_eq!(cpu_share(1), cpus);
    assert_eq!(cpu_share(0), cpus, "no workers is read as one");
    assert_eq!(cpu_share(2), (cpus / 2).max(1));
    assert_eq!(cpu_share(cpus * 3), 1, "never below one");
}

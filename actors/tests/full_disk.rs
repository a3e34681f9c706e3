//! A sled database that stops taking writes (a full disk; here the
//! process's file size limit, so no mount and no root are needed): the
//! first write it refuses marks the Raft log as unable to persist even
//! when no flush failed before it — sled's own threads write its buffers,
//! and when one of them hits the limit first, the next insert is what
//! fails — and a Store actor started on such a log idles instead of
//! failing, so its supervisor has no restart loop to escalate.
//!
//! One test in its own binary: the limit holds for the whole process.

use std::path::Path;
use std::sync::Arc;

use ractor::Actor;
use raft::prelude::{Entry, HardState};
use shoal_actors::raft::LogStore;
use shoal_actors::store::{StateMachine, StoreActor, StoreArgs};

/// The size of the largest file under `dir`.
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let meta = entry.metadata().expect("metadata");
        let size = if meta.is_dir() {
            largest_file(&entry.path())
        } else {
            meta.len()
        };
        largest = largest.max(size);
    }
    largest
}

fn entry(index: u64, bytes: usize) -> Entry {
    Entry {
        index,
        term: 1,
        data: vec![7u8; bytes].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_refused_write_parks_the_log_and_the_store_actor_without_a_failed_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .open()
        .expect("open");
    let log = LogStore::open(&db).expect("log");
    let sm = StateMachine::open(&db).expect("state machine");
    log.bootstrap(vec![1]).expect("bootstrap");
    // Entries committed but not applied yet: a Store actor that starts
    // catches up, which writes the state.
    log.append(&[entry(1, 16), entry(2, 16)]).expect("append");
    log.set_hard_state(&HardState {
        term: 1,
        commit: 2,
        ..Default::default()
    })
    .expect("hard state");
    db.flush().expect("flush");

    // From here no file grows: a write past a file's end fails (EFBIG)
    // instead of raising SIGXFSZ, which is ignored.
    let limit = largest_file(dir.path());
    // SAFETY: setting a signal's disposition to ignore, before any thread
    // of this test could be relying on it.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain system call with a valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) }, 0);

    // Appended without a flush, as the Raft actor does between them, until
    // sled refuses one: its buffers are written by its own threads.
    let refused = (3..4096u64).find_map(|i| log.append(&[entry(i, 64 * 1024)]).err());
    let refused = refused.expect("sled refuses a write once no file may grow");
    assert_eq!(log.flush_count(), 0, "no flush was asked for");
    let failed = log.failed();
    assert!(
        failed.is_some(),
        "a refused write ({refused}) marks the log as unable to persist"
    );

    // A Store actor started now idles: catching up would fail at once.
    let (events, _) = tokio::sync::broadcast::channel(16);
    let args = StoreArgs {
        sm: sm.clone(),
        log: Arc::clone(&log),
        events,
        metrics: Default::default(),
    };
    let (store, handle) = Actor::spawn(None, StoreActor, args)
        .await
        .expect("a Store actor on a log that cannot persist starts, parked");
    assert_eq!(sm.applied().index, 0, "nothing applied while parked");
    store.stop(None);
    handle.await.expect("stopped");
    // Not dropped: sled 0.34's last handle flushes as it goes, and after
    // an I/O error that flush waits for ever for a stable LSN that never
    // comes (seen here: `TreeInner::drop` → `make_stable`). The process
    // ends instead.
    std::mem::forget((db, log, sm));
}

//! Test support, built for `cargo test` only: a test body run on a thread of
//! its own inside a fresh network namespace, so that the rules, sets and
//! links it makes, and the processes it starts, stay there.
//!
//! It panics where this host cannot make one (not root) or a tool the test
//! needs is missing: the tests that use it are `#[ignore]`d and run as root
//! with `--include-ignored` (`tests/run.sh`'s test-root step), never passed
//! without running.

use std::path::Path;

/// Run `test` on a new thread moved into a new network namespace, once each
/// program in `tools` is there.
pub fn in_private_netns<T: Send + 'static>(
    tools: &[&str],
    test: impl FnOnce() -> T + Send + 'static,
) -> T {
    if let Some(missing) = tools.iter().find(|tool| !Path::new(tool).exists()) {
        panic!("{missing} is not installed");
    }
    let thread = std::thread::spawn(move || {
        // SAFETY: plain syscall; CLONE_NEWNET moves only this thread into a
        // new network namespace, which ends with the thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let e = std::io::Error::last_os_error();
            panic!("cannot create a network namespace (needs root): {e}");
        }
        test()
    });
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// [`in_private_netns`] for an async test, on a current-thread runtime of
/// that thread.
pub fn block_on_in_private_netns<T: Send + 'static>(
    tools: &[&str],
    test: impl AsyncFnOnce() -> T + Send + 'static,
) -> T {
    in_private_netns(tools, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test())
    })
}

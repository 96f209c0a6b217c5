//! A small bounded connection pool, and the threads that use it.
//!
//! The [`super::Store`] trait is synchronous and is called both from actix's
//! blocking pool and, for a few quick reads (the session behind a bearer
//! token), from the async workers themselves. The synchronous `postgres`
//! client drives its connection with its own Tokio runtime, which must not
//! be entered from a thread that is already running one. So every database
//! call runs on a thread of this module's own small thread pool (plain OS
//! threads, `rayon`), which borrows one connection for the call: the caller
//! blocks on the result exactly as it would on a sled read. There are as
//! many threads as connections, so a thread never waits for a connection.

use std::sync::{Mutex, MutexGuard};

use postgres::{Client, Config};

use super::tls::Link;
use super::Fail;
use crate::store::StoreError;

/// Connections kept, and threads using them.
pub(super) struct Pool {
    config: Config,
    link: Link,
    idle: Mutex<Vec<Client>>,
    threads: rayon::ThreadPool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration may hold a password: never printed.
        f.debug_struct("Pool")
            .field("threads", &self.threads.current_num_threads())
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(super) fn new(config: Config, link: Link, size: usize) -> Result<Self, StoreError> {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(size.max(1))
            .thread_name(|i| format!("medrelay-pg-{i}"))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres thread pool: {e}")))?;
        Ok(Self { config, link, idle: Mutex::new(Vec::new()), threads })
    }

    fn idle(&self) -> Result<MutexGuard<'_, Vec<Client>>, StoreError> {
        self.idle.lock().map_err(|_| StoreError::Backend("postgres pool lock poisoned".into()))
    }

    fn connect(&self) -> Result<Client, Fail> {
        // A failed connection says its sslmode and which TLS check failed.
        let mut client = self
            .config
            .connect(self.link.connector())
            .map_err(|e| Fail::Store(self.link.connect_error(&e)))?;
        // Every acknowledged write is durable whatever the server's default
        // (a call that must not be durable lowers it for its own
        // transaction); statements cannot hang a request forever.
        client.batch_execute(
            "SET synchronous_commit = on; SET statement_timeout = '60s'; \
             SET idle_in_transaction_session_timeout = '60s'",
        )?;
        Ok(client)
    }

    /// Runs `f` with a connection on one of the pool's threads; the caller
    /// waits. A connection that broke is dropped, not returned.
    pub(super) fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, Fail> + Send,
    ) -> Result<T, Fail> {
        self.threads.install(|| {
            let taken = self.idle()?.pop();
            let mut client = match taken {
                Some(c) if !c.is_closed() => c,
                _ => self.connect()?,
            };
            let out = f(&mut client);
            if !client.is_closed() {
                self.idle()?.push(client);
            }
            out
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing a client blocks on its runtime: done on the pool's own
        // threads, since the last handle may be dropped on an async worker.
        let idle = match self.idle.get_mut() {
            Ok(v) => std::mem::take(v),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        self.threads.install(move || drop(idle));
    }
}

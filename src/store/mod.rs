//! The store: the only part that talks to MySQL. Hits go through the
//! committer in batches; reads go through a small pool. Every call is a
//! stored procedure.

pub mod committer;
pub mod connect;
pub mod error;
pub mod hit;
pub mod members;
pub mod pool;
pub mod reads;
pub mod reply;
pub mod retry;
pub mod writer;

pub use connect::{DbSettings, Secret};
pub use error::DbError;
pub use hit::{Hit, HitWriter};
pub use members::{Member, Members};
pub use reads::Db;

//! crew's metrics core, with no IO: StatsD lines parsed without allocating (`statsd`), aggregated per flush
//! interval into one point per series (`agg`), points compressed Gorilla-style into chunks (`gorilla`), kept in
//! tiers of rollups with a write-ahead encoding for crash safety (`tsdb`), and read back by stat and step
//! (`query`); `prom` holds Prometheus' naming and escaping rules for what crew exposes and remote-writes. The
//! server owns the sockets, the clock and the store.

pub mod agg;
pub mod gorilla;
pub mod point;
pub mod prom;
pub mod query;
pub mod statsd;
pub mod tsdb;

pub use point::{Kind, Point};

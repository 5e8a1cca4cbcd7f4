//! crew's domain model: the event on the timeline, roles, timeline filters and time parsing. Does no IO.
//!
//! Architecture invariant: nothing here touches a socket, a file or a clock other than through arguments,
//! so every rule is testable as a table of input → expected output.

pub mod event;
pub mod filter;
pub mod kind;
pub mod role;
pub mod state;
pub mod time;

pub use event::{Actor, Event, EventError, Link, NewEvent, Via};
pub use filter::{search_words, Cursor, EventFilter, FilterError};
pub use role::Role;
pub use state::{Channel, Delivery, DeployAction, DeployStatus, IncidentStatus, LockKind, PostmortemState, Severity};

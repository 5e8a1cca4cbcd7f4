//! crew's robot, the parts that are not the server: the IRC connection (`irc`), its
//! capability and SASL negotiation (`cap`), the flood rule and
//! announcement queue (`outbox`), fitting text into lines (`text`), who is speaking (`mask`), the commands
//! as data (`commands`) and the one-line announcements of the timeline (`announce`). The server runs the
//! commands (it owns deploys, flags and the store); this crate never touches the store.

pub mod announce;
pub mod cap;
pub mod commands;
pub mod irc;
pub mod mask;
pub mod outbox;
pub mod text;
pub mod webhook;

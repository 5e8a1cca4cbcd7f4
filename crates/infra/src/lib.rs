//! crew's infrastructure model: roles (`roles/*.toml`, each a list of resources), hosts mapped to roles, the
//! order resources converge in (edges, automatic edges, ties in declaration order, cycles named), and
//! templates rendered with a host's vars and facts. **Planning does no IO**: the caller reads the files and
//! hands their text in. `engine` is the part that observes and changes a machine (under a root prefix).

pub mod engine;
pub mod graph;
pub mod model;
pub mod system;
pub mod template;

pub use graph::{order, Edge};
pub use model::{parse_role, Host, InfraError, Kind, Resource, Role, Spec};

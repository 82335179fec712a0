//! The speaker's core, free of I/O: who owns each address ([`election`]), whether this speaker may
//! answer at all ([`membership`]), when to send announcements ([`schedule`]) and on which interfaces
//! ([`interfaces`]); the node state machine that puts them together ([`node`]) and the seam through
//! which the runtime carries its actions out ([`dataplane`]); and the control-plane VIP's rules
//! ([`control_plane`]). Inputs, including the time, come in
//! as arguments; decisions come out as data that the runtime in `ferrolb-speaker` carries out.

pub mod control_plane;
pub mod dataplane;
pub mod election;
pub mod hash;
pub mod interfaces;
pub mod membership;
pub mod node;
pub mod schedule;

pub use dataplane::{Dataplane, drive};
pub use election::{Decision, NoOwner, NodeInfo, Options, PoolInfo, ServiceInfo, World, elect};
pub use membership::Membership;
pub use node::{Action, Node, Notice, Placement};
pub use schedule::Schedule;

pub use memberlist_proto::*;

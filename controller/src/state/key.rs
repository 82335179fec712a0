//! The key of a namespaced object in the decision core, instead of `"namespace/name"` text split
//! again wherever one half is needed.

use std::cmp::Ordering;
use std::fmt;

use ferrolb_allocator::ServiceKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A namespaced object: its namespace and name. Shown as `namespace/name`, as kubectl and the
/// logs name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// Object `name` in `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of the object `meta` describes (empty parts where the metadata has none).
    pub fn of(meta: &ObjectMeta) -> ObjectKey {
        ObjectKey::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The allocator's key of this Service.
    pub fn service(&self) -> ServiceKey {
        ServiceKey::new(&self.namespace, &self.name)
    }

    /// `namespace/name` as bytes, without building the text.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.namespace
            .bytes()
            .chain(std::iter::once(b'/'))
            .chain(self.name.bytes())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The order of the `namespace/name` text, not of (namespace, name): Services are decided in key
/// order, which decides who gets the lowest free address, and it was the text's order when the
/// keys were text (`a-b/x` comes before `a/x`, as `-` sorts before `/`). Kept so that the same
/// inputs give the same addresses as before.
impl Ord for ObjectKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal texts with different halves cannot be Kubernetes names (they hold no `/`); the
        // namespace still tells them apart, so that the order agrees with `Eq`.
        self.bytes()
            .cmp(other.bytes())
            .then_with(|| self.namespace.cmp(&other.namespace))
    }
}

impl PartialOrd for ObjectKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_and_ordered_as_the_text_it_replaces() {
        let keys = [
            ObjectKey::new("a", "x"),
            ObjectKey::new("a-b", "x"),
            ObjectKey::new("a", "x-1"),
            ObjectKey::new("ab", "c"),
            ObjectKey::new("a", "b/c"),
            ObjectKey::new("ns", "a"),
            ObjectKey::new("ns", "b"),
        ];
        let mut by_key = keys.to_vec();
        by_key.sort();
        let mut by_text: Vec<String> = keys.iter().map(ToString::to_string).collect();
        by_text.sort();
        assert_eq!(
            by_key.iter().map(ToString::to_string).collect::<Vec<_>>(),
            by_text
        );
        assert_eq!(ObjectKey::new("shop", "web").to_string(), "shop/web");
        assert_eq!(
            ObjectKey::new("shop", "web").service(),
            ServiceKey::new("shop", "web")
        );
    }
}

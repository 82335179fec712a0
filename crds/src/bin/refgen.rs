//! Prints the CRD field reference (`docs/reference/crds.md`) generated from the API types.
//! CI runs it and fails when the committed file differs.

fn main() {
    print!(
        "{}",
        ferrolb_crds::reference::reference(&ferrolb_crds::all())
    );
}

# The two commands of the README. Both need root (network namespaces) and install what they need.
# `make images` (docs/install.md) builds the two container images.
.PHONY: demo test images clean reference
demo:
	tests/scripts/demo.sh
test:
	tests/scripts/test.sh
images:
	tests/scripts/images.sh
# Removes every lab namespace left on this machine.
clean:
	cargo run -q -p ferrolb-lab -- clean
# Regenerates docs/reference (CRD fields from the API types, every command's --help); CI checks it.
reference:
	cargo build -q --workspace --bins
	tests/scripts/reference.sh

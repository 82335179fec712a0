# The two commands of the README. Both need root (network namespaces) and install what they need.
.PHONY: demo test clean
demo:
	tests/scripts/demo.sh
test:
	tests/scripts/test.sh
# Removes every lab namespace left on this machine.
clean:
	cargo run -q -p ferrolb-lab -- clean

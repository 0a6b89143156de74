module lapidary.dev/kind-tests/smoke

go 1.22

# Proves environment.d files are sourced for every phase.
export CONTRACT_TEST_VALUE=from-environment-d

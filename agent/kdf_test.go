package agent_test

// testKDFIterations is the PBKDF2 iteration count of the node keys the
// tests' agents store (agent.Config.KeyKDFIterations): the default
// (600,000) is most of a second of CPU per node SVID under the race
// detector. agent/nodesvid's tests cover the default.
const testKDFIterations = 1000

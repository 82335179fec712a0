//! The speaker's decisions without I/O: which live node owns each address, when to announce it, and
//! what to change to get from the actual state to the desired one. Inputs (including `now`) in,
//! actions out. Its implementation arrives with the speaker issue.

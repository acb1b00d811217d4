// Package catalog is the one table of user-facing errors: stable
// snake_case codes with the English message of the seeds' error appendix,
// reworded in our vocabulary (Jump Client → peer, support session →
// session), plus jumpmesh's own.
//
// Coordinator replies carry codes (ErrorToPB, ErrorFromPB); the CLI prints
// the message, and the code too with --json. Internal failures travel as
// CodeInternal with InternalNote: their details stay in the log of the
// party that answered.
package catalog

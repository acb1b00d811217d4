// Package words is the CLI's vocabulary for wire enums and group
// references: role and connection-type names, their parsers, and the
// user:/group: prefixes. The coordinator, the console and the peer use the
// same words so that what a user types is what every party prints.
package words

// Package frame reads and writes unsigned-varint-length-delimited protobuf
// messages (the go-libp2p pbio framing) on libp2p streams. Unlike go-msgio,
// its Reader checks a declared length against its limit before allocating,
// charges large messages to the stream's resource scope, and grows its
// buffer only as bytes arrive (unless told to allocate the declared length
// at once, AllocateDeclared: for an answer from a party the reader
// authenticated and asked). The control protocol, the peer protocol,
// sessions and the DHT lookup all frame their messages with it.
package frame

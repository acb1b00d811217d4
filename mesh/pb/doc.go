// Package pb holds the protobuf messages of jumpmesh, generated from the
// .proto files beside this file (`make proto`): site.proto has the records
// the coordinator stores and serves (users, invites, jump groups, policies,
// settings, installers, the signed installer key body); control.proto has
// the control protocol's Request and Response. Do not edit the .pb.go
// files by hand.
package pb

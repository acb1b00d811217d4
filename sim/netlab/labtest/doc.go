// Package labtest lets tests build netlab labs safely: it skips when the
// machine cannot run the lab (not root, no network namespaces), closes every
// lab when its test ends — passed, failed or panicked — and fails the test if
// anything was left behind. Main wraps a package's TestMain so that Ctrl-C,
// SIGTERM and an approaching -test.timeout tear down live labs too, and
// removes runs left by an earlier test binary that was killed.
//
// It is for tests only; the lab itself lives in netlab.
package labtest

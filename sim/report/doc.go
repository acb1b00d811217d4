// Package report renders a scenario run's results (the runner's
// results.json) as a self-contained report.html: a header (scenario,
// pass/fail, total time, date), the topology (networks with their NAT
// presets, hosts with their roles), a timeline of the steps as hand-written
// SVG, a table of the steps and their output excerpts.
//
// The page has no external resources: its CSS is inline, it has no
// JavaScript, and every chart is SVG written by this package, so it opens
// offline and from a CI artifact alike. Every string from the results is
// escaped by html/template.
//
// The page is a list of sections, each a named template in report.html.tmpl
// fed by a field of the page model; a new chart (such as the NAT grid's
// heat map) is a new template and a new field.
package report

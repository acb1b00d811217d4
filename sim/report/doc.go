// Package report renders a scenario run's results (the runner's
// results.json) as a self-contained report.html: a header (scenario,
// pass/fail, total time, date), the topology (networks with their NAT
// presets, hosts with their roles), a timeline of the steps as hand-written
// SVG, a table of the steps and their output excerpts.
//
// When the run measured paths (connect steps, a `sim grid` run), the page
// opens with them: the NAT traversal numbers (connected, direct rate overall
// and between endpoint-independent NATs, per run, time to direct against
// its target of 2 × relay RTT + 30 ms), the grid as a heat map (a row per
// console preset, a column per peer preset, each cell coloured by how its
// runs ended), for a grid its pair classes (results.Classes, over every run)
// and their direct rates against the anchors (libp2p DCUtR in the wild,
// Tailscale), the distributions of time to connect and time to direct
// (cumulative dot plots with p50 and p90), and a table of every path.
//
// The page is rendered from the types of sim/results, the schema of
// results.json that the runner writes, so the report reads exactly the
// fields the runner writes; it never imports the runner, so a report can
// be rendered from any results file.
//
// The page has no external resources: its CSS is inline, it has no
// JavaScript, and every chart is SVG written by this package, so it opens
// offline and from a CI artifact alike. Every string from the results is
// escaped by html/template.
//
// The page is a list of sections, each a named template (report.html.tmpl;
// the path sections in paths.html.tmpl) fed by a field of the page model; a
// new chart is a new template and a new field.
package report

// Package results is the schema of results.json, the file a scenario run
// (`jumpmesh sim run`, `jumpmesh sim grid`) leaves in its output directory:
// the run, its networks and hosts, each step's outcome, the paths that
// connect steps measured and the grid a grid run was made from.
//
// The scenario runner (sim/scenario) fills these types and writes them;
// the report (sim/report) reads them back and renders them as report.html.
// Both use this one definition, so the file the runner writes is the file
// the report reads. The JSON field names are the file's format: results
// files kept from earlier runs (CI artifacts) must still render, so a field
// may be added but not renamed or given another type.
//
// The package holds only data, its file I/O and one pure aggregation both
// sides use: Classes, a grid's paths by pair class (the runner writes it
// into results.json, the report renders it and computes it for files
// without it). It must not import the runner or the report.
package results

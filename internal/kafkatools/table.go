// Package kafkatools reads what Apache Kafka's own command-line tools print,
// for the tests that compare ferry with them: the library's interop tests and
// the ferry command's (ferry lag, ferry offsets reset). One parser serves
// both, so the two compare against the same reading of the tool.
package kafkatools

import "strings"

// GroupTable reads the whitespace-aligned table kafka-consumer-groups prints
// for --describe (with or without --members) and for --reset-offsets: a
// header line starting with GROUP, then one row per line whose first column
// is group, keyed by the header's column names (GROUP, TOPIC, PARTITION,
// CURRENT-OFFSET, NEW-OFFSET, …). Empty cells are printed as "-", so fields
// never shift; a line with another number of fields is not a row. ok is
// false when out has no header: the tool exits 0 on errors such as an
// unknown group, and prints only a message.
func GroupTable(out, group string) (rows []map[string]string, ok bool) {
	var header []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "GROUP":
			header = f
		case header != nil && len(f) == len(header) && f[0] == group:
			row := make(map[string]string, len(f))
			for i, name := range header {
				row[name] = f[i]
			}
			rows = append(rows, row)
		}
	}
	return rows, header != nil
}

package kafkatools

import (
	"reflect"
	"testing"
)

// GroupTable reads the tables kafka-consumer-groups 4.3.1 printed (copied
// from its output), keeps only the group's rows, and says when there was
// no table at all.
func TestGroupTable(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		rows      []map[string]string
		ok        bool
	}{
		{name: "describe, no member", ok: true, out: `
Consumer group 'g' has no active members.

GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID
g               orders          0          3               10              7               -               -               -
g               orders          1          20              20              0               -               -               -
`, rows: []map[string]string{
			{"GROUP": "g", "TOPIC": "orders", "PARTITION": "0", "CURRENT-OFFSET": "3", "LOG-END-OFFSET": "10", "LAG": "7", "CONSUMER-ID": "-", "HOST": "-", "CLIENT-ID": "-"},
			{"GROUP": "g", "TOPIC": "orders", "PARTITION": "1", "CURRENT-OFFSET": "20", "LOG-END-OFFSET": "20", "LAG": "0", "CONSUMER-ID": "-", "HOST": "-", "CLIENT-ID": "-"},
		}},
		{name: "describe --members", ok: true, out: `
GROUP           CONSUMER-ID                HOST            CLIENT-ID       #PARTITIONS
g               kgo-3f1c2b                 /127.0.0.1      ferry           3
`, rows: []map[string]string{
			{"GROUP": "g", "CONSUMER-ID": "kgo-3f1c2b", "HOST": "/127.0.0.1", "CLIENT-ID": "ferry", "#PARTITIONS": "3"},
		}},
		{name: "reset-offsets --dry-run", ok: true, out: `
GROUP           TOPIC           PARTITION  NEW-OFFSET
g               orders          0          0
g               orders          2          15
`, rows: []map[string]string{
			{"GROUP": "g", "TOPIC": "orders", "PARTITION": "0", "NEW-OFFSET": "0"},
			{"GROUP": "g", "TOPIC": "orders", "PARTITION": "2", "NEW-OFFSET": "15"},
		}},
		{name: "other groups and short lines are not rows", ok: true, out: `
GROUP           TOPIC           PARTITION  NEW-OFFSET
gg              orders          0          0
g               orders          1
g               orders          2          15
`, rows: []map[string]string{
			{"GROUP": "g", "TOPIC": "orders", "PARTITION": "2", "NEW-OFFSET": "15"},
		}},
		{name: "header only", ok: true, out: "GROUP TOPIC PARTITION NEW-OFFSET\n"},
		{name: "an error, exit status 0", ok: false, out: `
Error: Executing consumer group command failed due to org.apache.kafka.common.errors.GroupIdNotFoundException: Group g not found.
java.util.concurrent.ExecutionException: org.apache.kafka.common.errors.GroupIdNotFoundException: Group g not found.
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, ok := GroupTable(tc.out, "g")
			if ok != tc.ok || !reflect.DeepEqual(rows, tc.rows) {
				t.Errorf("GroupTable = %v, %v; want %v, %v", rows, ok, tc.rows, tc.ok)
			}
		})
	}
}

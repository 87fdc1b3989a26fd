package ferrypg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ferrykit/ferry"
	"github.com/jackc/pgx/v5"
)

// owner is what an assignment read from the offsets table: the partition's
// owner token after the bump, and its stored next offset (-1 for none).
type owner struct {
	token int64
	next  int64
}

// route is one routed topic: its table and the owner tokens of its
// partitions' latest assignments.
type route struct {
	group, topic string
	db           DB
	h            Handler
	cfg          config
	table        string // sanitized

	createMu sync.Mutex
	created  bool

	mu     sync.Mutex
	owners map[int32]owner // set on assignment, read when the consumer is built
}

func newRoute(group, topic string, db DB, h Handler, cfg config) *route {
	return &route{
		group: group, topic: topic, db: db, h: h, cfg: cfg,
		table:  pgx.Identifier(strings.Split(cfg.table, ".")).Sanitize(),
		owners: make(map[int32]owner),
	}
}

// ensureTable creates the offsets table if missing (D4), once per route.
// An advisory lock keeps members starting together from racing on it.
func (r *route) ensureTable(ctx context.Context) error {
	r.createMu.Lock()
	defer r.createMu.Unlock()
	if r.created {
		return nil
	}
	err := pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "ferrypg "+r.table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+r.table+` (
	consumer_group text        NOT NULL,
	topic          text        NOT NULL,
	partition      integer     NOT NULL,
	next_offset    bigint      NOT NULL,
	owner_token    bigint      NOT NULL,
	updated_at     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer_group, topic, partition)
)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("ferrypg: creating offsets table %s: %w", r.table, err)
	}
	r.created = true
	return nil
}

// start runs on every assignment, before anything is fetched
// (ferry.StartOffsets): it bumps the owner token of each newly assigned
// partition and reads its stored offset in the same statement (D2, D3).
func (r *route) start(ctx context.Context, _ string, committed map[int32]int64) (map[int32]int64, error) {
	if err := r.ensureTable(ctx); err != nil {
		return nil, err
	}
	ids := make([]int32, 0, len(committed))
	for id := range committed {
		ids = append(ids, id)
	}
	slices.Sort(ids) // rows locked in one order, whoever bumps
	var owners map[int32]owner
	err := pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO `+r.table+` AS o (consumer_group, topic, partition, next_offset, owner_token)
SELECT $1, $2, p, -1, 1 FROM unnest($3::integer[]) AS p
ON CONFLICT (consumer_group, topic, partition)
DO UPDATE SET owner_token = o.owner_token + 1, updated_at = now()
RETURNING partition, next_offset, owner_token`, r.group, r.topic, ids)
		if err != nil {
			return err
		}
		owners = make(map[int32]owner, len(ids))
		var id int32
		var o owner
		_, err = pgx.ForEachRow(rows, []any{&id, &o.next, &o.token}, func() error {
			owners[id] = o
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ferrypg: claiming partitions %v of %s in %s: %w", ids, r.topic, r.table, err)
	}
	start := make(map[int32]int64, len(owners))
	r.mu.Lock()
	for id, o := range owners {
		r.owners[id] = o
		if o.next >= 0 {
			start[id] = o.next
		}
	}
	r.mu.Unlock()
	return start, nil
}

func (r *route) owner(id int32) (owner, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.owners[id]
	return o, ok
}

// errFenced is why a fenced transaction was rolled back.
var errFenced = errors.New("ferrypg: the partition's owner token changed: another member was assigned it")

// writeOffset moves the partition's stored offset to next inside tx, on the
// condition that the row still carries token (D3).
func (r *route) writeOffset(ctx context.Context, tx pgx.Tx, partition int32, token, next int64) error {
	tag, err := tx.Exec(ctx, `UPDATE `+r.table+` SET next_offset = $1, updated_at = now()
WHERE consumer_group = $2 AND topic = $3 AND partition = $4 AND owner_token = $5`,
		next, r.group, r.topic, partition, token)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %w (%s/%d, token %d)", ferry.ErrNotOwned, errFenced, r.topic, partition, token)
	}
	return nil
}

// read returns the partition's stored row.
func (r *route) read(ctx context.Context, partition int32) (owner, error) {
	var o owner
	err := pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT next_offset, owner_token FROM `+r.table+`
WHERE consumer_group = $1 AND topic = $2 AND partition = $3`, r.group, r.topic, partition).Scan(&o.next, &o.token)
	})
	return o, err
}

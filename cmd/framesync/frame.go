package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"framesync"

	"github.com/spf13/cobra"
)

func newFrameCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "frame",
		Short: "Work with frame files (msgpack)",
	}
	var fields string
	show := &cobra.Command{
		Use:   "show FILE",
		Short: "Check a msgpack frame file and list its fields, dtypes, shapes and blob hashes",
		Long: `Decode a frame written in framesync's msgpack format (for example by
Python's msgpack.packb(frame, default=msgpack_numpy.encode)), validate it
strictly, and print one line per field with its blob hash, plus the frame's
hash (the hash of its manifest). Exits 1 with the field and problem named if
the frame is invalid.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			f, err := framesync.DecodeFrame(b)
			if err == nil {
				err = f.Validate()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if fields != "" {
				sel, err := framesync.ParseFieldList(fields)
				if err != nil {
					return usageError{err}
				}
				if f, err = f.Select(sel...); err != nil {
					return err
				}
			}
			m, _, err := f.Split()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintf(w, "FIELD\tTYPE\tSHAPE\tVALUE\tBLOB\n")
			for _, name := range f.Fields() {
				v, _ := f.Field(name)
				typ, shape, val := describeValue(v)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", name, typ, shape, val, m[name])
			}
			w.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "atoms: %d  fields: %d  frame: %s\n", f.N(), len(m), m.Hash())
			return nil
		},
	}
	show.Flags().StringVar(&fields, "data", "", "show only these fields (comma-separated names or groups: arrays, info, calc)")
	c.AddCommand(show)
	return c
}

// describeValue returns the type, shape and (for scalars) value of a field for display.
func describeValue(v any) (typ, shape, val string) {
	switch v := v.(type) {
	case *framesync.Array:
		return string(v.DType), fmt.Sprint(v.Shape), ""
	case nil:
		return "nil", "", ""
	case string:
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		return "str", "", fmt.Sprintf("%q", v)
	default:
		return fmt.Sprintf("%T", v), "", fmt.Sprint(v)
	}
}

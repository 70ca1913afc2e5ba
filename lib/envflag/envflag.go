// Package envflag fills a flag set from environment variables, so every
// service takes the same settings as flags or as ALUMINI_* variables.
package envflag

import (
	"flag"
	"fmt"
	"strings"
)

// Prefix starts the name of every environment variable a service reads.
const Prefix = "ALUMINI_"

// Name is the environment variable that sets the flag called flagName:
// "kafka-brokers" is read from ALUMINI_KAFKA_BROKERS.
func Name(flagName string) string {
	return Prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// Parse sets each flag of fs from its environment variable when that is
// present, then parses args, so a flag on the command line wins over the
// environment and both win over the default. lookup is os.LookupEnv outside
// tests. Errors name the variable that held a bad value.
func Parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		env := Name(f.Name)
		if v, ok := lookup(env); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", env, v, setErr)
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// Usage prints every flag with the environment variable that also sets it.
func Usage(fs *flag.FlagSet) func() {
	return func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage of %s (every flag can also be set by the environment variable shown):\n", fs.Name())
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  -%s %s\t(%s)\n    \t%s", f.Name, name, Name(f.Name), usage)
			if f.DefValue != "" {
				fmt.Fprintf(out, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
}

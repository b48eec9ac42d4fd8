// Package doccmd extracts the signet command lines from the shell code
// blocks of Markdown documents, so that tests can check that every command
// the docs show exists (cmd/signet) and run the ones that need nothing but a
// running CA (test/e2e): docs that cannot go stale.
//
// A code block counts when its info string is sh, bash, shell or console.
// In it, a command is a line (with its backslash continuations) or a part
// of one between |, &&, || and ;, that starts with "signet" after any
// VAR=value assignments. Comments (" #") are dropped; "> FILE" is kept as
// the command's Stdout. A block preceded by the line
//
//	<!-- docs-test: parse only (why) -->
//
// has its commands marked ParseOnly: they exist but are not to be run
// (they need a real host, agents, or run until stopped).
package doccmd

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Command is one signet command line of a document.
type Command struct {
	// Line is the line of the document the command starts on (from 1).
	Line int
	// Raw is the command as written, continuations joined.
	Raw string
	// Args are the words after "signet", unquoted.
	Args []string
	// Stdout is the file a "> FILE" redirection names, if any.
	Stdout string
	// ParseOnly: the block is marked not to be run.
	ParseOnly bool
}

func (c Command) String() string { return fmt.Sprintf("line %d: %s", c.Line, c.Raw) }

// ParseOnlyMarker starts the comment that marks a block parse only.
const ParseOnlyMarker = "<!-- docs-test: parse only"

// Extract returns the signet commands of a Markdown document, in order.
func Extract(doc []byte) ([]Command, error) {
	var out []Command
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(nil, 1<<20)
	var (
		inBlock, shell, parseOnly bool
		lastText                  string // the last non-empty line outside blocks
		pending                   string // a line continued with a backslash
		pendingLine               int
	)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !inBlock {
				lang := strings.Fields(strings.TrimPrefix(trimmed, "```") + " ")
				shell = len(lang) > 0 && (lang[0] == "sh" || lang[0] == "bash" || lang[0] == "shell" || lang[0] == "console")
				parseOnly = strings.HasPrefix(lastText, ParseOnlyMarker)
				inBlock = true
			} else {
				inBlock, pending, lastText = false, "", ""
			}
			continue
		}
		if !inBlock {
			if trimmed != "" {
				lastText = trimmed
			}
			continue
		}
		if !shell {
			continue
		}
		if pending == "" {
			pendingLine = n
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		full := pending + line
		pending = ""
		cmds, err := parseLine(full)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", pendingLine, err)
		}
		for _, c := range cmds {
			c.Line, c.ParseOnly = pendingLine, parseOnly
			out = append(out, c)
		}
	}
	return out, sc.Err()
}

// parseLine splits one shell line into its signet commands.
func parseLine(line string) ([]Command, error) {
	words, err := split(line)
	if err != nil {
		return nil, err
	}
	var out []Command
	var seg []word
	flush := func() {
		if c, ok := command(seg); ok {
			out = append(out, c)
		}
		seg = nil
	}
	for _, w := range words {
		if w.op {
			flush()
			continue
		}
		seg = append(seg, w)
	}
	flush()
	return out, nil
}

// command makes a Command of one segment if it runs signet.
func command(seg []word) (Command, bool) {
	i := 0
	for i < len(seg) && isAssignment(seg[i].text) {
		i++
	}
	if i == len(seg) || seg[i].text != "signet" {
		return Command{}, false
	}
	c := Command{}
	var raw []string
	for _, w := range seg[i:] {
		raw = append(raw, w.raw)
	}
	c.Raw = strings.Join(raw, " ")
	rest := seg[i+1:]
	for j := 0; j < len(rest); j++ {
		switch rest[j].text {
		case ">", ">>":
			if j+1 < len(rest) {
				c.Stdout = rest[j+1].text
				j++
			}
			continue
		case "2>", "<", "2>&1":
			j++
			continue
		}
		c.Args = append(c.Args, rest[j].text)
	}
	return c, true
}

func isAssignment(s string) bool {
	name, _, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return false
	}
	for i, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// word is a shell word (text unquoted, raw as written) or an operator
// that separates commands.
type word struct {
	text, raw string
	op        bool
}

// split cuts a line into words the way a POSIX shell would for the
// simple lines docs hold: single and double quotes, backslash escapes,
// $(...) kept whole, comments, and the operators | || && ; & as words of
// their own. Redirections (>, >>, 2>, <) are words too.
func split(line string) ([]word, error) {
	var out []word
	var text, raw strings.Builder
	inWord := false
	end := func() {
		if inWord {
			out = append(out, word{text: text.String(), raw: raw.String()})
		}
		text.Reset()
		raw.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			end()
		case ch == '#' && !inWord:
			end()
			return out, nil
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			text.WriteString(line[i+1 : i+1+j])
			raw.WriteString(line[i : i+2+j])
			inWord = true
			i += j + 1
		case ch == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' && j+1 < len(line) {
					j++
					text.WriteByte(line[j])
					continue
				}
				text.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			raw.WriteString(line[i : j+1])
			inWord = true
			i = j
		case ch == '\\' && i+1 < len(line):
			text.WriteByte(line[i+1])
			raw.WriteString(line[i : i+2])
			inWord = true
			i++
		case ch == '$' && i+1 < len(line) && line[i+1] == '(':
			depth, j := 0, i+1
			for ; j < len(line); j++ {
				if line[j] == '(' {
					depth++
				} else if line[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unterminated $( in %q", line)
			}
			text.WriteString(line[i : j+1])
			raw.WriteString(line[i : j+1])
			inWord = true
			i = j
		case ch == '|' || ch == ';' || ch == '&' && !(i > 0 && line[i-1] == '>'):
			end()
			op := string(ch)
			if i+1 < len(line) && (line[i+1] == '|' || line[i+1] == '&') {
				op += string(line[i+1])
				i++
			}
			out = append(out, word{text: op, raw: op, op: true})
		case ch == '>' || ch == '<':
			// 2> and 2>&1 stay words of their own.
			if inWord && text.String() == "2" {
				text.WriteByte(ch)
				raw.WriteByte(ch)
				if strings.HasPrefix(line[i+1:], "&1") {
					text.WriteString("&1")
					raw.WriteString("&1")
					i += 2
				}
				end()
				continue
			}
			end()
			op := string(ch)
			if ch == '>' && i+1 < len(line) && line[i+1] == '>' {
				op = ">>"
				i++
			}
			out = append(out, word{text: op, raw: op})
		default:
			text.WriteByte(ch)
			raw.WriteByte(ch)
			inWord = true
		}
	}
	end()
	return out, nil
}

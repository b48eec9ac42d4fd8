package main

import (
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// The command-line pieces signet shares with signet-agent live in
// cmd/internal/cli; these are their names in this package.

// duration is a config key holding a time.Duration (cli.Duration).
type duration = cli.Duration

// yamlError is a problem at a line of a YAML file (cli.YAMLError).
type yamlError = cli.YAMLError

const (
	day                = cli.Day
	defaultAgentSocket = cli.DefaultAgentSocket
	endpointSocketEnv  = cli.EndpointSocketEnv
	defaultTrustDomain = cli.DefaultTrustDomain
	passphraseEnv      = cli.PassphraseEnv
	adminSocketEnv     = cli.AdminSocketEnv
)

var (
	registerConfigFlags = cli.RegisterConfigFlags
	decodeConfig        = cli.DecodeConfig
	readLimited         = cli.ReadLimited
	readAllLimited      = cli.ReadAllLimited
	jsonKey             = cli.JSONKey
	fileOnly            = cli.FileOnly
	durationOf          = cli.DurationOf
	parseDuration       = cli.ParseDuration
	formatDuration      = cli.FormatDuration
	newDurationValue    = cli.NewDurationValue
	parseYAML           = cli.ParseYAML
	unwrapYAML          = cli.UnwrapYAML
	yamlMapping         = cli.YAMLMapping
	yamlKind            = cli.YAMLKind
	yamlErrorf          = cli.YAMLErrorf
	decodeYAMLStruct    = cli.DecodeYAMLStruct
	newLogger           = cli.NewLogger
	logShutdown         = cli.LogShutdown
	socketPath          = cli.SocketPath
	checkSocketLen      = cli.CheckSocketLen
	checkWritableDir    = cli.CheckWritableDir
	listenTelemetry     = cli.ListenTelemetry
	noArgs              = cli.NoArgs
	usageError          = cli.UsageError
	oneLine             = cli.OneLine
)

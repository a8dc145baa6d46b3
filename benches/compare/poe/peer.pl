#!/usr/bin/perl
# The original, POE::Component::Client::Keepalive, as a peer of the compare
# benchmark (benches/compare/poe.rs drives it). One process serves a whole
# run: the runner writes a command line, this script runs that workload on
# POE's kernel for the given seconds and answers one line. Timing starts
# after a warm-up, as on our side.
#
#   hit PORT SECS              -> "hit CYCLES ELAPSED"
#       allocate -> response event -> free, one at a time, against a server
#       that holds connections open: the pool's cache-hit cycle.
#   connect PORT SECS          -> "connect CONNECTIONS ELAPSED"
#       allocate a new connection, set SO_LINGER 0, close it instead of
#       freeing it (the pool then drops it): new connections per second.
#   http PORT CONC SECS MAX    -> "http REQUESTS ELAPSED P50_US P99_US"
#       CONC lanes, each allocate -> GET -> read the response by
#       Content-Length -> free, from a fresh pool (connects included), until
#       SECS pass or MAX requests complete: benches/compare/client.rs in Perl.
#   quit
#
# First line out: "ready POE_VERSION KEEPALIVE_VERSION LOOP PERL_VERSION", or
# "missing MODULE" if a module is not installed. Errors: "error MESSAGE".
use strict;
use warnings;

BEGIN {
    for my $m (qw(POE POE::Component::Client::Keepalive POE::Filter::Stream)) {
        (my $file = "$m.pm") =~ s{::}{/}g;
        unless (eval { require $file; 1 }) {
            $| = 1;
            print "missing $m\n";
            exit 0;
        }
    }
}

use POE qw(Component::Client::Keepalive Filter::Stream);
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time);

$| = 1;
# No sessions yet: returns at once, and keeps POE from warning at exit that
# run() was never called. The workloads below drive the kernel with
# run_one_timeslice() until they are done.
POE::Kernel->run();

my $loop = POE::Kernel::poe_kernel_loop() // "unknown";
printf "ready %s %s %s %vd\n", $POE::VERSION,
  $POE::Component::Client::Keepalive::VERSION, $loop, $^V;

my $GET = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

# One pool per workload kind and port, kept across rounds like our warm
# reactors (the HTTP workload makes a fresh one per run, as ours does).
my %hit_pool;
my %connect_pool;

while (my $line = <STDIN>) {
    chomp $line;
    my ($cmd, @args) = split ' ', $line;
    next unless defined $cmd;
    last if $cmd eq 'quit';
    my $reply = eval {
        if ($cmd eq 'hit') { hit(@args) }
        elsif ($cmd eq 'connect') { connect_rate(@args) }
        elsif ($cmd eq 'http') { http(@args) }
        else { die "unknown command $cmd\n" }
    };
    if (!defined $reply) {
        my $err = $@ || 'failed';
        $err =~ s/\s+/ /g;
        $reply = "error $err";
    }
    print "$reply\n";
}
# Shut the kept pools down while POE is still there: left to global
# destruction, their DESTROY would find the kernel gone.
$_->shutdown() for values %hit_pool, values %connect_pool;
%hit_pool = %connect_pool = ();
exit 0;

# Runs the kernel until $$done is set.
sub run_until {
    my ($done) = @_;
    POE::Kernel->run_one_timeslice() until $$done;
}

sub hit {
    my ($port, $secs) = @_;
    my $pool = $hit_pool{$port} //= POE::Component::Client::Keepalive->new(
        max_per_host => 1,
        keep_alive   => 600,
    );
    my ($done, $cycles, $start, $error) = (0, 0, 0);
    POE::Session->create(
        inline_states => {
            _start => sub {
                # Warm-up: the first allocate connects; later ones hit.
                $pool->allocate(scheme => 'http', addr => '127.0.0.1', port => $port,
                    event => 'warm', context => 'warm');
            },
            warm => sub {
                my $r = $_[ARG0];
                my $conn = delete $r->{connection};
                unless ($conn) { $error = "connect: $r->{function} $r->{error_str}"; $done = 1; return }
                undef $conn;    # back to the pool
                $start = time;
                $pool->allocate(scheme => 'http', addr => '127.0.0.1', port => $port,
                    event => 'got', context => 'hit');
            },
            got => sub {
                my $r = $_[ARG0];
                my $conn = delete $r->{connection};
                unless ($conn && $r->{from_cache}) {
                    $error = "not a cache hit"; $done = 1; return;
                }
                undef $conn;    # free(): back to the pool
                $cycles++;
                if ($cycles % 64 == 0 && time - $start >= $secs) { $done = 1; return }
                $pool->allocate(scheme => 'http', addr => '127.0.0.1', port => $port,
                    event => 'got', context => 'hit');
            },
        },
    );
    run_until(\$done);
    die "$error\n" if $error;
    return sprintf "hit %d %.6f", $cycles, time - $start;
}

sub connect_rate {
    my ($port, $secs) = @_;
    my $pool = $connect_pool{$port} //= POE::Component::Client::Keepalive->new();
    my ($done, $n, $start, $error) = (0, 0, 0);
    my $allocate = sub {
        $pool->allocate(scheme => 'http', addr => '127.0.0.1', port => $port,
            event => 'got', context => 'connect');
    };
    POE::Session->create(
        inline_states => {
            _start => sub { $start = time; $allocate->() },
            got    => sub {
                my $r = $_[ARG0];
                my $conn = delete $r->{connection};
                unless ($conn) { $error = "connect: $r->{function} $r->{error_str}"; $done = 1; return }
                # Close with RST, as ours does (see abort_on_close in
                # main.rs): the connection object is an array whose first
                # element is the socket.
                setsockopt($conn->[0], SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
                $conn->close();
                undef $conn;    # the pool sees a closed socket and drops it
                $n++;
                if (time - $start >= $secs) { $done = 1; return }
                $allocate->();
            },
        },
    );
    run_until(\$done);
    die "$error\n" if $error;
    return sprintf "connect %d %.6f", $n, time - $start;
}

sub http {
    my ($port, $conc, $secs, $max) = @_;
    my $pool = POE::Component::Client::Keepalive->new(
        max_per_host => $conc,
        max_open     => ($conc > 128 ? $conc : 128),
        keep_alive   => 600,
    );
    my ($done, $issued, $completed, $error) = (0, 0, 0);
    my @lat;
    my (@started, @conn, @buf);
    my %lane_of_wheel;
    my $start = time;
    my $deadline = $start + $secs;
    my $allocate = sub {
        my ($lane) = @_;
        $started[$lane] = time;
        $issued++;
        # The context must be true: a lane number would not do for lane 0.
        $pool->allocate(scheme => 'http', addr => '127.0.0.1', port => $port,
            event => 'got', context => [$lane]);
    };
    POE::Session->create(
        inline_states => {
            _start => sub {
                for my $lane (0 .. $conc - 1) {
                    $allocate->($lane) if $issued < $max;
                }
                $done = 1 unless $issued;
            },
            got => sub {
                my $r = $_[ARG0];
                my $lane = $r->{context}[0];
                my $conn = delete $r->{connection};
                unless ($conn) { $error = "connect: $r->{function} $r->{error_str}"; $done = 1; return }
                $conn->start(
                    InputEvent => 'input',
                    ErrorEvent => 'failed',
                    Filter     => POE::Filter::Stream->new(),
                );
                $lane_of_wheel{ $conn->wheel->ID } = $lane;
                $conn[$lane] = $conn;
                $buf[$lane] = '';
                $conn->wheel->put($GET);
            },
            input => sub {
                my ($data, $wheel_id) = @_[ARG0, ARG1];
                my $lane = $lane_of_wheel{$wheel_id};
                return unless defined $lane;
                $buf[$lane] .= $data;
                return unless complete($buf[$lane]);
                push @lat, (time - $started[$lane]) * 1e6;
                $completed++;
                delete $lane_of_wheel{$wheel_id};
                $conn[$lane] = undef;    # free(): back to the pool
                if (time < $deadline && $issued < $max) {
                    $allocate->($lane);
                } elsif ($completed == $issued) {
                    $done = 1;
                }
            },
            failed => sub {
                my ($op, $errnum, $errstr) = @_[ARG0 .. ARG2];
                $error = "$op: $errstr ($errnum)";
                $done = 1;
            },
        },
    );
    run_until(\$done);
    my $elapsed = time - $start;
    @conn = ();
    $pool->shutdown();
    die "$error\n" if $error;
    @lat = sort { $a <=> $b } @lat;
    return sprintf "http %d %.6f %.1f %.1f", $completed, $elapsed,
      percentile(\@lat, 0.50), percentile(\@lat, 0.99);
}

# Whether a whole response (by Content-Length) is in the buffer.
sub complete {
    my $end = index($_[0], "\r\n\r\n");
    return 0 if $end < 0;
    my $len = substr($_[0], 0, $end) =~ /^content-length:\s*(\d+)/im ? $1 : 0;
    return length($_[0]) >= $end + 4 + $len;
}

sub percentile {
    my ($sorted, $p) = @_;
    return 'nan' unless @$sorted;
    return $sorted->[ int((@$sorted - 1) * $p + 0.5) ];
}

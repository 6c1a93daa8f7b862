#!/usr/bin/perl
# Rewrites CUDA launches `kernel<<<config>>>(args)` as
# `::emu::Launch(config)(kernel, args)` so that a .cu file compiles as C++
# against emulation.h. Usage: rewrite_launches.pl IN.cu OUT.cc
use strict;
use warnings;
my ($in, $out) = @ARGV;
open(my $fh, '<', $in) or die "$in: $!";
local $/;
my $text = <$fh>;
close($fh);
my $count = ($text =~ s/(\w+(?:<[^<>;()]*>)?)<<<(.*?)>>>\s*\(/::emu::Launch($2)($1, /gs);
open(my $oh, '>', $out) or die "$out: $!";
print $oh "// Generated from $in by rewrite_launches.pl ($count launches).\n#line 1 \"$in\"\n$text";
close($oh);

# Fig. 3 left: shared query-key space vs separate Q and K (full attention)
# Draws shared-qk.plot.dat (one data block per series) to shared-qk.svg. Redraw by hand with
#   gnuplot shared-qk.gp
# in this directory; another output: gnuplot -e "svg_file='other.svg'" shared-qk.gp
if (!exists("svg_file")) svg_file = 'shared-qk.svg'
set terminal svg size 960,600 dynamic noenhanced font 'Helvetica,15' linewidth 1.5 background rgb 'white'
set output svg_file
set title 'Fig. 3 left: shared query-key space vs separate Q and K (full attention)' font ',18'
set xlabel 'step'
set ylabel 'held-out bits/byte'
set linetype 1 linecolor rgb '#0072b2'
set linetype 2 linecolor rgb '#d55e00'
set linetype 3 linecolor rgb '#009e73'
set linetype 4 linecolor rgb '#cc79a7'
set linetype 5 linecolor rgb '#e69f00'
set linetype 6 linecolor rgb '#56b4e9'
set linetype 7 linecolor rgb '#000000'
set linetype 8 linecolor rgb '#999999'
set linetype cycle 8
set grid back linetype 1 linecolor rgb '#e4e4e4' linewidth 1
set border 3
set tics nomirror out
set key outside below center horizontal Left reverse spacing 1.2 width 0
set offsets graph 0.02, graph 0.02, graph 0.05, graph 0.05
plot \
  'shared-qk.plot.dat' index 0 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'separate Q/K', \
  '' index 1 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'shared QK'

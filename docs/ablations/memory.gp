# Activation memory of a training step, 4 layers
# Draws memory.plot.dat (one data block per series) to memory.svg. Redraw by hand with
#   gnuplot memory.gp
# in this directory; another output: gnuplot -e "svg_file='other.svg'" memory.gp
if (!exists("svg_file")) svg_file = 'memory.svg'
set terminal svg size 960,600 dynamic noenhanced font 'Helvetica,15' linewidth 1.5 background rgb 'white'
set output svg_file
set title 'Activation memory of a training step, 4 layers' font ',18'
set xlabel 'sequence length'
set ylabel 'activations (MB): peak minus parameter gradients'
set logscale x 2
set format x '%.0f'
set logscale y 10
set format y '%g'
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
set key outside below center horizontal Left reverse spacing 1.2 width -4
set offsets 0, 0, 0, 0
plot \
  'memory.plot.dat' index 0 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'Transformer', \
  '' index 1 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'Reversible Transformer', \
  '' index 2 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'Chunked Reversible Transformer', \
  '' index 3 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'LSH Transformer', \
  '' index 4 using 1:2 with linespoints linewidth 2 pointtype 7 pointsize 0.8 title 'Reformer'

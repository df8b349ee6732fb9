"""Interactive views of runs and analyses, for notebooks and the HTML report.

plotly and circuitsvis are imported only under this package. The modules here may import
`circuits` and `interp`; nothing outside `circuits.viz` imports them (except lazily, to
write the report). Every function returns an object (a plotly `Figure`, an `HtmlView`, a
string of HTML): the notebook displays it, the report embeds it, nothing is shown here.

- `figures`: plotly figures with a checkpoint slider (Fourier spectrum, neuron clusters,
  direct logit attribution, layer × position heatmaps such as the logit lens) and the
  transition timeline;
- `graph`: the circuit graph (`circuits.analyses.circuit_graph`) with a checkpoint slider;
- `attention`: attention patterns through circuitsvis, offline (bundle inlined once);
- `page`: offline page assembly (plotly.js and the circuitsvis bundle once each);
- `report`: the self-contained HTML report of a run (`interp analyze --html`).

In a notebook (see `experiments/grokking_walkthrough.ipynb`):

    import interp
    from circuits.pipeline.analyze import analyze_run
    from circuits.viz import figures
    from circuits.viz.page import setup_notebook

    setup_notebook()                      # offline: plotly.js and circuitsvis once each
    run = interp.load_run("runs/demo")
    result = analyze_run(run)
    figures.plot_timeline(result)         # a plotly Figure: displays, or .write_html(...)
"""

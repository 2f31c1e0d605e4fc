"""Deciding one request: the rules' answer to a diagnosis and the patient facts, explained.

`request` validates the JSON a caller sends into typed facts; `terminology` reads the diagnosis
(a code, a name, a synonym, or words it can only match approximately, which it proposes and never
decides on); `decision` turns the engine's verdict into the outcome, its rationale and evidence;
`dosing` computes the dose-determining weight and the grams in a product's vials; `formulary`
strings them together over one loaded rulebook. No database and no Flask: everything here is a
pure function of the rulebook and the request, so it is tested without either.
"""

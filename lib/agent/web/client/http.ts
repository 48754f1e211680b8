// GET a JSON endpoint of the agent, relative to the page (so a path prefix in front works too).
export class FetchError extends Error {}

export async function getJson<T>(path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, { cache: 'no-store' });
  } catch (err) {
    throw new FetchError(`the agent does not answer (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!res.ok) throw new FetchError(`${path}: HTTP ${res.status} ${(await res.text()).trim()}`);
  return (await res.json()) as T;
}
